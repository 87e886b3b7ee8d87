"""Training: hyper-parameters, pipelines, metrics, and what a run logs to MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core import artifacts, tags
from core.config import Settings, load_settings
from core.data import dataset_from_frame, load_dataset, split_dataset
from core.errors import TrainingError
from core.tracking import client_for
from core.training import (
    ESTIMATORS,
    GOLDEN_ARTIFACT,
    Progress,
    TrainRequest,
    build_pipeline,
    evaluate,
    signature_for,
    train,
)
from tests.conftest import Trained

QUICK_PARAMS: dict[str, dict[str, Any]] = {
    "logistic_regression": {"max_iter": 200},
    "random_forest": {"n_estimators": 10, "max_depth": 4},
    "gradient_boosting": {"max_iter": 20},
}


def churn_frame(rows: int = 200, seed: int = 1) -> pd.DataFrame:
    """A learnable table: numbers, a categorical, NaN in both, string labels."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 60, rows).astype(float)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    churned = np.where((tenure < 20) | (plan == "basic"), "yes", "no")
    frame = pd.DataFrame(
        {
            "tenure": tenure,
            "spend": rng.normal(40, 10, rows).round(2),
            "plan": plan,
            "churned": churned,
        }
    )
    frame.loc[::6, "spend"] = np.nan
    frame.loc[::8, "plan"] = None
    return frame


@pytest.mark.parametrize(
    ("estimator", "name", "raw", "value"),
    [
        ("logistic_regression", "C", "0.5", 0.5),
        ("logistic_regression", "max_iter", "300", 300),
        ("logistic_regression", "max_iter", "3e2", 300),
        ("random_forest", "max_depth", "None", None),
        ("gradient_boosting", "max_depth", "", None),
    ],
)
def test_params_are_coerced_from_text(
    estimator: str, name: str, raw: str, value: Any
) -> None:
    assert ESTIMATORS[estimator].resolve({name: raw})[name] == value


@pytest.mark.parametrize(
    ("estimator", "params", "message"),
    [
        (
            "logistic_regression",
            {"C": "strong"},
            "C='strong' is not a float; for example C=1.0.",
        ),
        (
            "logistic_regression",
            {"max_iter": "2.5"},
            "max_iter='2.5' must be a whole number.",
        ),
        (
            "logistic_regression",
            {"C": "0"},
            "C=0.0 is out of range; use 0.0001 to 10000.0.",
        ),
        (
            "random_forest",
            {"n_estimators": "None"},
            "n_estimators='None' is not an int; for example n_estimators=200.",
        ),
        (
            "logistic_regression",
            {"C": "nan"},
            "C='nan' is not a float; for example C=1.0.",
        ),
        (
            "gradient_boosting",
            {"max_iter": "inf"},
            "max_iter='inf' is not an int; for example max_iter=200.",
        ),
        (
            "random_forest",
            {"depth": "3"},
            "random_forest has no parameter 'depth'; settable: n_estimators, "
            "max_depth, min_samples_leaf.",
        ),
    ],
)
def test_bad_params_are_refused_with_an_example(
    estimator: str, params: dict[str, str], message: str
) -> None:
    with pytest.raises(TrainingError) as raised:
        ESTIMATORS[estimator].resolve(params)

    assert str(raised.value) == message


def test_unknown_estimator_is_refused_before_any_work(tmp_path: Path) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})

    with pytest.raises(TrainingError) as raised:
        train(settings, TrainRequest("iris", estimator="svm"))

    assert str(raised.value) == (
        "unknown estimator 'svm'; use one of logistic_regression, random_forest, "
        "gradient_boosting."
    )


def test_multiclass_metrics_are_macro_averaged_with_auc() -> None:
    dataset = load_dataset("iris")
    split = split_dataset(dataset)
    spec = ESTIMATORS["logistic_regression"]
    model = build_pipeline(dataset, spec, {}, 42).fit(split.x_train, split.y_train)

    metrics = evaluate(model, split.x_test, split.y_test)

    assert set(metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert all(0.8 <= value <= 1.0 for value in metrics.values())


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["yes", "no"], "string"),
        ([1, 0], "long"),
        ([True, False], "boolean"),
        ([0.5, 1.5], "double"),
    ],
)
def test_signature_types_labels_as_they_are(labels: list[Any], expected: str) -> None:
    frame = churn_frame().assign(churned=labels * 100)
    dataset = dataset_from_frame(frame, "churned", "churn", "memory")

    signature = signature_for(dataset, dataset.frame["churned"])

    assert signature.outputs.to_dict() == [{"type": expected, "required": True}]
    assert [c["type"] for c in signature.inputs.to_dict()] == [
        "double",
        "double",
        "string",
    ]


@pytest.mark.integration
def test_a_run_logs_params_metrics_tags_datasets_and_golden_set(
    trained: Trained,
) -> None:
    result = trained.results[0]
    run = client_for(trained.settings).get_run(result.run_id)

    assert run.data.params["estimator"] == "logistic_regression"
    assert run.data.params["seed"] == "42"
    assert run.data.metrics == pytest.approx(result.metrics)
    assert run.data.tags[tags.GOLDEN_DIGEST] == result.golden_digest
    assert json.loads(run.data.tags[tags.RUN_FEATURES])["categorical"] == []
    contexts = {
        i.dataset.name: {t.key: t.value for t in i.tags}["mlflow.data.context"]
        for i in run.inputs.dataset_inputs
    }
    assert contexts == {
        "breast_cancer-train": "training",
        "breast_cancer-golden": "evaluation",
    }
    listed = client_for(trained.settings).list_artifacts(result.run_id, "golden")
    assert [a.path for a in listed] == [GOLDEN_ARTIFACT]


@pytest.mark.integration
def test_a_version_is_registered_as_a_tagged_candidate(trained: Trained) -> None:
    result = trained.results[0]
    version = client_for(trained.settings).get_model_version(
        result.model_name, result.model_version
    )

    assert version.tags[tags.STATUS] == "candidate"
    assert version.tags[tags.GOLDEN_DIGEST] == result.golden_digest
    assert version.tags[tags.RUN_ACTOR] == "trainer"
    assert version.run_id == result.run_id


@pytest.mark.integration
@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_estimator_logs_loads_and_predicts_with_missing_values(
    settings: Settings, tmp_path: Path, estimator: str
) -> None:
    data = tmp_path / "churn.csv"
    churn_frame().to_csv(data, index=False)
    steps: list[str] = []
    request = TrainRequest(
        str(data), estimator, QUICK_PARAMS[estimator], target="churned"
    )

    result = train(settings, request, progress=lambda p: steps.append(p.step))

    incoming = tmp_path / "incoming.csv"
    incoming.write_text("tenure,spend,plan\n3,,basic\n,55.5,\n50,12,platinum\n")
    rows = pd.read_csv(incoming)
    served = artifacts.load_pyfunc(settings, result.model_version).predict(rows)
    assert set(served) <= {"yes", "no"} and len(served) == 3
    fitted = artifacts.load_model(settings, result.model_version)
    assert list(fitted.predict(rows)) == list(served)
    assert steps == ["load", "split", "fit", "evaluate", "log", "register", "done"]
    assert result.metrics["accuracy"] > 0.8


@pytest.mark.integration
def test_progress_messages_name_the_golden_split(settings: Settings) -> None:
    seen: list[Progress] = []

    train(
        settings, TrainRequest("iris", params={"max_iter": 200}), progress=seen.append
    )

    assert seen[1].message.startswith("112 training rows, 38 golden rows (digest ")
    assert [p.fraction for p in seen] == sorted(p.fraction for p in seen)
    assert seen[-1].message == "Registered studio-classifier version 1"
