"""Train a scikit-learn classifier, log it to MLflow and register a candidate version.

One call of `train` fits a preprocessing + estimator pipeline on the seeded
train split, evaluates it on the golden split, and logs params, metrics, both
dataset inputs with their digests, the golden set itself and the model (with
signature and input example). The registered version is tagged as a candidate.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import skops.io as skops_io
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.pandas_dataset import from_pandas
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from core import tags
from core.config import Settings
from core.data import Dataset, Split, load_dataset, split_dataset
from core.errors import StudioError, TrainingError
from core.profiles import PROFILE_ARTIFACT, profile_frame
from core.tracking import client_for, ensure_experiment, fluent, unreachable

logger = logging.getLogger(__name__)

GOLDEN_ARTIFACT = "golden/golden.parquet"
METRIC_NAMES = ("accuracy", "precision", "recall", "f1", "roc_auc")


@dataclass(frozen=True)
class ParamSpec:
    """A hyper-parameter a user may set, with its type and allowed range."""

    name: str
    kind: type
    default: Any
    low: float | None = None
    high: float | None = None
    allow_none: bool = False
    help: str = ""

    def coerce(self, raw: Any) -> Any:
        """Turn a CLI string or widget value into a checked value of `kind`.

        Raises:
            TrainingError: the value is not of the kind or outside the range.
        """
        if raw is None or (self.allow_none and str(raw).lower() in ("none", "")):
            if self.allow_none:
                return None
            raise TrainingError(
                f"{self.name} needs a value; default is {self.default}."
            )
        try:
            value = self.kind(float(raw)) if self.kind is int else self.kind(raw)
        except (TypeError, ValueError, OverflowError):  # int(float("inf")) overflows
            value = None
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            article = "an" if self.kind.__name__[0] in "aeiou" else "a"
            raise TrainingError(
                f"{self.name}={raw!r} is not {article} {self.kind.__name__}; "
                f"for example {self.name}={self.default}."
            )
        if self.kind is int and float(raw) != value:
            raise TrainingError(f"{self.name}={raw!r} must be a whole number.")
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise TrainingError(
                f"{self.name}={value} is out of range; use {self.low} to {self.high}."
            )
        return value


@dataclass(frozen=True)
class EstimatorSpec:
    """An estimator offered for training and its settable hyper-parameters."""

    name: str
    label: str
    factory: Callable[..., ClassifierMixin]
    params: tuple[ParamSpec, ...]
    scale_numeric: bool = True

    def build(self, params: Mapping[str, Any], seed: int) -> ClassifierMixin:
        """Instantiate the estimator with checked `params` and the split's seed."""
        extra = {"random_state": seed}
        return self.factory(**self.resolve(params), **extra)

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with `params`, every value checked.

        Raises:
            TrainingError: an unknown parameter or a bad value.
        """
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise TrainingError(
                f"{self.name} has no parameter {unknown[0]!r}; "
                f"settable: {', '.join(known)}."
            )
        resolved = {p.name: p.default for p in self.params}
        for name, raw in params.items():
            resolved[name] = known[name].coerce(raw)
        return resolved


ESTIMATORS: dict[str, EstimatorSpec] = {
    spec.name: spec
    for spec in (
        EstimatorSpec(
            name="logistic_regression",
            label="Logistic regression",
            factory=LogisticRegression,
            params=(
                ParamSpec(
                    "C", float, 1.0, 1e-4, 1e4, help="inverse regularisation strength"
                ),
                ParamSpec("max_iter", int, 1000, 10, 100_000, help="solver iterations"),
            ),
        ),
        EstimatorSpec(
            name="random_forest",
            label="Random forest",
            factory=RandomForestClassifier,
            params=(
                ParamSpec("n_estimators", int, 200, 1, 5000, help="number of trees"),
                ParamSpec(
                    "max_depth",
                    int,
                    None,
                    1,
                    100,
                    allow_none=True,
                    help="tree depth limit (None: unlimited)",
                ),
                ParamSpec(
                    "min_samples_leaf", int, 1, 1, 1000, help="smallest leaf size"
                ),
            ),
            scale_numeric=False,
        ),
        EstimatorSpec(
            name="gradient_boosting",
            label="Gradient boosting (histogram)",
            factory=HistGradientBoostingClassifier,
            params=(
                ParamSpec("learning_rate", float, 0.1, 1e-4, 1.0, help="shrinkage"),
                ParamSpec("max_iter", int, 200, 1, 10_000, help="boosting rounds"),
                ParamSpec(
                    "max_depth",
                    int,
                    None,
                    1,
                    100,
                    allow_none=True,
                    help="tree depth limit (None: unlimited)",
                ),
                ParamSpec(
                    "l2_regularization",
                    float,
                    0.0,
                    0.0,
                    100.0,
                    help="L2 penalty on leaf values",
                ),
            ),
            scale_numeric=False,
        ),
    )
}


@dataclass(frozen=True)
class TrainRequest:
    """What to train: a dataset (built-in name or file), estimator and params."""

    dataset: str
    estimator: str = "logistic_regression"
    params: Mapping[str, Any] = field(default_factory=dict)
    target: str | None = None
    test_size: float = 0.25
    seed: int = 42
    description: str = ""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced in MLflow."""

    run_id: str
    model_name: str
    model_version: str
    model_uri: str
    metrics: dict[str, float]
    golden_digest: str
    dataset_digest: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view, for the CLI and the app's job log."""
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "model_uri": self.model_uri,
            "metrics": self.metrics,
            "golden_digest": self.golden_digest,
            "dataset_digest": self.dataset_digest,
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class Progress:
    """One step of a training run, reported through the progress callback."""

    step: str
    fraction: float
    message: str


ProgressCallback = Callable[[Progress], None]


def build_pipeline(
    dataset: Dataset, spec: EstimatorSpec, params: Mapping[str, Any], seed: int
) -> Pipeline:
    """Preprocessing for numbers and categories, then the estimator."""
    numeric_steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy="median"))
    ]
    if spec.scale_numeric:
        numeric_steps.append(("scale", StandardScaler()))
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), dataset.numeric_features),
            ("categorical", categorical, dataset.categorical_features),
        ],
        remainder="drop",
    )
    return Pipeline([("preprocess", preprocess), ("model", spec.build(params, seed))])


def signature_for(dataset: Dataset, labels: pd.Series) -> ModelSignature:
    """A signature where every feature is required and numbers are doubles.

    Written by hand rather than inferred: inference marks a column optional only
    when the example happens to hold a missing value, and types whole numbers as
    ``long``, which would reject NaN at inference. Here a missing value inside a
    column is allowed (imputed); a missing column is not.
    """
    inputs: list[ColSpec | TensorSpec] = [
        ColSpec("double" if c in dataset.numeric_features else "string", c)
        for c in dataset.features
    ]
    # pandas 3 reads text as its `str` dtype, not object; both are strings here.
    if pd.api.types.is_bool_dtype(labels):
        label_type = "boolean"
    elif pd.api.types.is_integer_dtype(labels):
        label_type = "long"
    elif pd.api.types.is_float_dtype(labels):
        label_type = "double"
    else:
        label_type = "string"
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec(label_type)]))


def evaluate(model: Pipeline, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and ROC AUC (where defined) on `x`, `y`.

    Binary targets score the second class of ``model.classes_`` as positive;
    multiclass targets use macro averages and one-vs-rest AUC.
    """
    predicted = model.predict(x)
    classes = list(model.classes_)
    binary = len(classes) == 2
    average: dict[str, Any] = (
        {"average": "binary", "pos_label": classes[1]}
        if binary
        else {"average": "macro"}
    )
    metrics = {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, zero_division=0, **average)),
        "recall": float(recall_score(y, predicted, zero_division=0, **average)),
        "f1": float(f1_score(y, predicted, zero_division=0, **average)),
    }
    if hasattr(model, "predict_proba") and set(np.unique(y)) == set(classes):
        proba = model.predict_proba(x)
        if binary:
            metrics["roc_auc"] = float(roc_auc_score(y == classes[1], proba[:, 1]))
        else:
            metrics["roc_auc"] = float(
                roc_auc_score(
                    y, proba, multi_class="ovr", average="macro", labels=classes
                )
            )
    return metrics


def trusted_types(model: Pipeline) -> list[str]:
    """The exact non-default types skops finds in this fitted model.

    MLflow 3 saves scikit-learn models with skops and refuses types it does not
    trust; we pass exactly those of the model we just built, never a blanket list.
    """
    return list(skops_io.get_untrusted_types(data=skops_io.dumps(model)))


def model_requirements() -> list[str]:
    """Pinned requirements of a logged model: what loading it needs, nothing more.

    Given explicitly because MLflow's own inference loads the model in a
    subprocess, which costs seconds per run.
    """
    packages = ("mlflow-skinny", "scikit-learn", "skops", "pandas", "numpy", "scipy")
    return [f"{name}=={package_version(name)}" for name in packages]


def train(
    settings: Settings, request: TrainRequest, progress: ProgressCallback | None = None
) -> TrainResult:
    """Train, evaluate, log and register one model version.

    Args:
        settings: where to log and which registered model to add a version to.
        request: dataset, estimator and hyper-parameters.
        progress: called with each step; must not raise.

    Raises:
        DataError: the dataset is unusable.
        TrainingError: a bad estimator or parameter, or fitting failed.
        RegistryError: MLflow could not be reached or refused the model.
    """
    report = progress or (lambda _p: None)
    started = time.monotonic()
    spec = ESTIMATORS.get(request.estimator)
    if spec is None:
        raise TrainingError(
            f"unknown estimator {request.estimator!r}; use one of "
            f"{', '.join(ESTIMATORS)}."
        )
    params = spec.resolve(request.params)

    report(Progress("load", 0.05, f"Loading dataset {request.dataset}"))
    dataset = load_dataset(request.dataset, request.target)
    split = split_dataset(dataset, request.test_size, request.seed)
    report(
        Progress(
            "split",
            0.15,
            f"{len(split.x_train)} training rows, "
            f"{len(split.x_test)} golden rows (digest {split.golden_digest})",
        )
    )

    report(Progress("fit", 0.2, f"Fitting {spec.label}"))
    pipeline = build_pipeline(dataset, spec, params, request.seed)
    try:
        pipeline.fit(split.x_train, split.y_train)
    except (ValueError, MemoryError) as exc:
        raise TrainingError(
            f"fitting {spec.label} on {dataset.name} failed: {exc}"
        ) from exc
    metrics = evaluate(pipeline, split.x_test, split.y_test)
    report(
        Progress(
            "evaluate",
            0.55,
            "Golden-set metrics: "
            + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()),
        )
    )

    try:
        result = _log_and_register(
            settings, request, dataset, split, spec, params, pipeline, metrics, report
        )
    except StudioError:
        raise
    except Exception as exc:  # MLflow raises many kinds; name the store either way.
        raise unreachable(settings, exc) from exc
    seconds = time.monotonic() - started
    logger.info(
        "Registered %s version %s from run %s (accuracy %.4f) in %.1f s",
        result.model_name,
        result.model_version,
        result.run_id,
        metrics["accuracy"],
        seconds,
    )
    report(
        Progress(
            "done",
            1.0,
            f"Registered {result.model_name} version {result.model_version}",
        )
    )
    return TrainResult(**{**result.__dict__, "seconds": seconds})


def _dataset_source(dataset: Dataset) -> DatasetSource:
    """MLflow's record of where a dataset came from: a file, or code for built-ins."""
    if dataset.source.startswith("sklearn:"):
        return CodeDatasetSource(
            tags={"loader": f"sklearn.datasets.load_{dataset.name}"}
        )
    with warnings.catch_warnings():
        # MLflow registers its local-file source twice (for "" and "file://") and
        # warns on every plain path that it is ambiguous; both are the same class.
        warnings.filterwarnings(
            "ignore", message="The specified dataset source can be interpreted"
        )
        return resolve_dataset_source(dataset.source)


def _log_and_register(
    settings: Settings,
    request: TrainRequest,
    dataset: Dataset,
    split: Split,
    spec: EstimatorSpec,
    params: dict[str, Any],
    pipeline: Pipeline,
    metrics: dict[str, float],
    report: ProgressCallback,
) -> TrainResult:
    experiment_id = ensure_experiment(settings, settings.experiment_name)
    source = _dataset_source(dataset)
    train_frame = split.x_train.assign(**{dataset.target: split.y_train})
    train_input = from_pandas(
        train_frame, source=source, name=f"{dataset.name}-train", targets=dataset.target
    )
    golden_input = from_pandas(
        split.golden_frame,
        source=source,
        name=f"{dataset.name}-golden",
        targets=dataset.target,
    )
    run_tags = {
        tags.RUN_DATASET: dataset.name,
        tags.RUN_DATASET_SOURCE: dataset.source,
        tags.RUN_TARGET: dataset.target,
        tags.RUN_ESTIMATOR: spec.name,
        tags.GOLDEN_DIGEST: split.golden_digest,
        tags.RUN_FEATURES: json.dumps(
            {
                "numeric": dataset.numeric_features,
                "categorical": dataset.categorical_features,
            }
        ),
        tags.RUN_CLASSES: json.dumps([str(c) for c in pipeline.classes_]),
        tags.RUN_ACTOR: settings.actor,
    }

    with (
        fluent(settings),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{spec.name}-{dataset.name}",
            tags=run_tags,
            description=request.description or None,
        ) as run,
    ):
        mlflow.log_params(
            {
                **{k: str(v) for k, v in params.items()},
                "estimator": spec.name,
                "dataset": dataset.name,
                "test_size": split.test_size,
                "seed": split.seed,
                "n_train": len(split.x_train),
                "n_golden": len(split.x_test),
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_input(train_input, context="training")
        mlflow.log_input(golden_input, context="evaluation")
        with tempfile.TemporaryDirectory() as tmp:
            golden_path = Path(tmp) / Path(GOLDEN_ARTIFACT).name
            split.golden_frame.to_parquet(golden_path, index=False)
            mlflow.log_artifact(
                str(golden_path), artifact_path=str(Path(GOLDEN_ARTIFACT).parent)
            )
        # The gate's drift check compares this with the production version's.
        mlflow.log_dict(
            profile_frame(split.x_train, numeric=dataset.numeric_features).to_dict(),
            PROFILE_ARTIFACT,
        )
        report(Progress("log", 0.7, "Logging model to MLflow"))
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature_for(dataset, split.y_train),
            input_example=split.x_test.head(3),
            skops_trusted_types=trusted_types(pipeline),
            pip_requirements=model_requirements(),
            registered_model_name=settings.model_name,
        )
        run_id = run.info.run_id

    version = str(info.registered_model_version)
    report(Progress("register", 0.9, f"Tagging version {version} as a candidate"))
    client = client_for(settings)
    version_tags = {
        tags.STATUS: "candidate",
        tags.GOLDEN_DIGEST: split.golden_digest,
        tags.RUN_DATASET: dataset.name,
        tags.RUN_ESTIMATOR: spec.name,
        tags.RUN_ACTOR: settings.actor,
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    return TrainResult(
        run_id=run_id,
        model_name=settings.model_name,
        model_version=version,
        model_uri=f"models:/{settings.model_name}/{version}",
        metrics=metrics,
        golden_digest=split.golden_digest,
        dataset_digest=train_input.digest,
        seconds=0.0,
    )
