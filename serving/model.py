"""Load one model version and predict with it, inside the inference worker."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel

from serving.payload import Column

logger = logging.getLogger(__name__)


# What scikit-learn and pandas raise for rows a model cannot take: a string in a
# number column, a wrong column count, NaN where the estimator allows none.
CALLER_ERRORS = (ValueError, TypeError, KeyError)


class LoadError(Exception):
    """The model version could not be loaded or cannot be served."""


class InputRejected(Exception):
    """A model without signature refused the rows of a request.

    Raised for the `CALLER_ERRORS` its predict raised on those rows: with no
    signature to check a request against first, the model's own checks are the
    only input contract there is.
    """


@dataclass(frozen=True)
class LoadedModel:
    """A loaded version with everything needed to predict and describe it.

    Immutable: a newer version replaces the whole object, so a batch that took
    a reference keeps predicting with one consistent model.

    For a model without signature (`columns` None), `fitted_names` and
    `fitted_count` are what scikit-learn recorded at fit time
    (``feature_names_in_``, ``n_features_in_``), when it did.
    """

    pyfunc: PyFuncModel
    estimator: Any
    columns: tuple[Column, ...] | None
    fitted_names: tuple[str, ...] | None
    fitted_count: int | None
    outputs: list[dict[str, Any]] | None
    classes: list[Any] | None
    version: str
    run_id: str | None
    model_uri: str
    loaded_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )

    def predict(
        self, frame: pd.DataFrame
    ) -> tuple[list[Any], list[dict[str, float]] | None]:
        """Predict labels, and class probabilities when the model has them.

        Labels come from the pyfunc model, exactly as
        ``mlflow.pyfunc.load_model(uri).predict(frame)`` gives them offline.

        Raises:
            InputRejected: the model has no signature and refused these rows.
        """
        try:
            labels = self.pyfunc.predict(frame)
            rows = None
            if self.classes is not None:
                rows = self.estimator.predict_proba(frame).tolist()
        except CALLER_ERRORS as error:
            # With a signature, MLflow has already checked the rows, so such an
            # error is a fault of the model or the server, not of the request.
            if self.columns is not None:
                raise
            raise InputRejected(f"{type(error).__name__}: {error}") from error
        predictions = _plain(labels)
        if self.classes is None or rows is None:
            return predictions, None
        keys = [str(label) for label in self.classes]
        return predictions, [dict(zip(keys, row, strict=True)) for row in rows]

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about the model for /health and /metadata."""
        columns = None
        if self.columns is not None:
            columns = [
                {"name": c.name, "type": c.type, "required": c.required}
                for c in self.columns
            ]
        return {
            "model_version": self.version,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "loaded_at": self.loaded_at,
            "signature": {"inputs": columns, "outputs": self.outputs},
            "classes": self.classes,
        }


def load_model(target: dict[str, Any], download_dir: Path) -> LoadedModel:
    """Download and load the version named by a resolved target.

    Raises:
        LoadError: the artifact is missing or unreadable, or its signature is
            not column-based.
    """
    version = str(target["version"])
    destination = download_dir / f"v{version}-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    destination.mkdir(parents=True)
    try:
        pyfunc = mlflow.pyfunc.load_model(
            target["model_uri"], dst_path=str(destination)
        )
    except Exception as error:
        shutil.rmtree(destination, ignore_errors=True)
        source = target.get("source_uri") or target["model_uri"]
        raise LoadError(
            f"could not load version {version} from {target['model_uri']} "
            f"(artifacts at {source}): {type(error).__name__}: {error}"
            f"{_unreachable_folder_hint(source)}"
        ) from error
    logger.debug("downloaded version %s to %s", version, destination)

    try:
        estimator = pyfunc.get_raw_model()
    except NotImplementedError:
        estimator = None
    has_proba = hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_")
    columns = _columns(pyfunc, version)
    fitted_names, fitted_count = (
        (None, None) if columns is not None else _fitted(estimator)
    )
    return LoadedModel(
        pyfunc=pyfunc,
        estimator=estimator,
        columns=columns,
        fitted_names=fitted_names,
        fitted_count=fitted_count,
        outputs=_outputs(pyfunc),
        classes=estimator.classes_.tolist() if has_proba else None,
        version=version,
        run_id=target.get("run_id"),
        model_uri=target["model_uri"],
    )


def _unreachable_folder_hint(source: str) -> str:
    # The usual cause: a host's embedded store records host paths, and this
    # process runs in a container that cannot see them.
    parts = urlsplit(source)
    if parts.scheme != "file" or Path(url2pathname(parts.path)).exists():
        return ""
    return (
        "; that folder does not exist here: serve the artifact root with "
        "`mlflow server --serve-artifacts --artifacts-destination <root>` and set "
        "STUDIO_ARTIFACT_PROXY_PREFIX to the root's file URI"
    )


def _columns(pyfunc: PyFuncModel, version: str) -> tuple[Column, ...] | None:
    schema = pyfunc.metadata.get_input_schema()
    if schema is None:
        logger.warning(
            "version %s has no signature; requests are passed on unchecked", version
        )
        return None
    if schema.is_tensor_spec():
        raise LoadError(
            f"version {version} has a tensor-based signature; this server serves "
            f"models whose signature lists named columns"
        )
    specs = schema.to_dict()
    if any("name" not in spec for spec in specs):
        raise LoadError(
            f"version {version} has a signature with unnamed columns; this server "
            f"serves models whose signature lists named columns"
        )
    return tuple(
        Column(spec["name"], spec["type"], spec.get("required", True)) for spec in specs
    )


def _fitted(estimator: Any) -> tuple[tuple[str, ...] | None, int | None]:
    # scikit-learn sets feature_names_in_ only when fitted on a frame with string
    # column names; a Pipeline's property raises AttributeError when its first
    # step has none, which getattr turns into the default.
    names = getattr(estimator, "feature_names_in_", None)
    count = getattr(estimator, "n_features_in_", None)
    return (
        None if names is None else tuple(str(name) for name in names),
        int(count) if isinstance(count, int | np.integer) else None,
    )


def _outputs(pyfunc: PyFuncModel) -> list[dict[str, Any]] | None:
    schema = pyfunc.metadata.get_output_schema()
    return None if schema is None else schema.to_dict()


def _plain(predictions: Any) -> list[Any]:
    if isinstance(predictions, pd.DataFrame):
        return predictions.to_dict(orient="records")
    if hasattr(predictions, "tolist"):
        result: list[Any] = predictions.tolist()
        return result
    return list(predictions)
