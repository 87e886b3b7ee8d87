"""Load what a model version is made of: the fitted model and its golden set.

Versions and runs are immutable once written, so both are cached per store.
"""

from __future__ import annotations

import json
import logging
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from core import tags
from core.config import Settings
from core.data import prepare_features
from core.errors import GateError
from core.profiles import PROFILE_ARTIFACT, Profile
from core.tracking import client_for, fluent
from core.training import GOLDEN_ARTIFACT

logger = logging.getLogger(__name__)


def load_model(settings: Settings, version: str) -> Any:
    """The fitted scikit-learn pipeline of a version (cached).

    Raises:
        GateError: the model cannot be loaded (missing artifacts, foreign flavor).
    """
    return _load_model(
        settings.tracking_uri, settings.model_name, str(version), settings
    )


@lru_cache(maxsize=16)
def _load_model(uri: str, name: str, version: str, settings: Settings) -> Any:
    del uri  # part of the cache key only
    model_uri = f"models:/{name}/{version}"
    try:
        with fluent(settings):
            return mlflow.sklearn.load_model(model_uri)
    except (MlflowException, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GateError(
            f"cannot load {model_uri} as a scikit-learn model: {first[:300]}"
        ) from exc


def load_pyfunc(settings: Settings, version: str) -> Any:
    """The version as a generic pyfunc model, as `mlflow models serve` runs it."""
    with fluent(settings):
        return mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")


@lru_cache(maxsize=16)
def _load_golden(uri: str, run_id: str, settings: Settings) -> pd.DataFrame | None:
    del uri
    client = client_for(settings)
    try:
        listed = [a.path for a in client.list_artifacts(run_id, "golden")]
    except MlflowException:
        return None
    if GOLDEN_ARTIFACT not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, GOLDEN_ARTIFACT, tmp)
        return pd.read_parquet(Path(path))


def load_golden(settings: Settings, run_id: str) -> pd.DataFrame | None:
    """The golden set logged by a training run, or None for foreign runs."""
    return _load_golden(settings.tracking_uri, run_id, settings)


def golden_xy(settings: Settings, run_id: str) -> tuple[pd.DataFrame, pd.Series] | None:
    """Golden features (typed as at training) and labels, or None if not ours."""
    frame = load_golden(settings, run_id)
    if frame is None:
        return None
    run = client_for(settings).get_run(run_id)
    target = run.data.tags.get(tags.RUN_TARGET)
    features = json.loads(run.data.tags.get(tags.RUN_FEATURES, "{}") or "{}")
    if not target or target not in frame.columns:
        return None
    x = prepare_features(
        frame.drop(columns=[target]),
        features.get("numeric", []),
        features.get("categorical", []),
    )
    return x, frame[target]


@lru_cache(maxsize=16)
def _load_profile(uri: str, run_id: str, settings: Settings) -> Profile | None:
    del uri
    client = client_for(settings)
    folder = str(Path(PROFILE_ARTIFACT).parent)
    try:
        listed = [a.path for a in client.list_artifacts(run_id, folder)]
    except MlflowException:
        return None
    if PROFILE_ARTIFACT not in listed:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, PROFILE_ARTIFACT, tmp)
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    return Profile.from_dict(document)


def load_profile(settings: Settings, run_id: str) -> Profile | None:
    """The training-data profile a run logged, or None (older or foreign runs).

    Raises:
        DataError: the logged profile is malformed.
    """
    if not run_id:
        return None
    return _load_profile(settings.tracking_uri, run_id, settings)
