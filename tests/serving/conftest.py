"""A real MLflow store with registered models, and real servers started on it.

The models are logged the way ``core.training`` logs them (ColumnTransformer +
estimator pipeline, hand-written signature with required double/string columns,
exact skops trusted types, pinned requirements), directly with MLflow so the
serving tests do not depend on core.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import skops.io
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.conftest import REPO_ROOT, free_port

MIXED_MODEL = "serving-mixed"  # numbers, a string column, NaN, string labels
INT_MODEL = "serving-int"  # numbers only, integer labels, no alias at first
UNSIGNED_MODEL = "serving-unsigned-{}"  # iris, no signature; see register_unsigned
CATEGORICAL = "clinic"
EXPERIMENT = "serving-tests"


@dataclass(frozen=True)
class ModelStore:
    """A sqlite tracking store with file artifacts, as the studio embeds it."""

    root: Path
    tracking_uri: str
    artifact_root: Path
    holdout: pd.DataFrame
    run_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    metrics: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)

    def client(self) -> MlflowClient:
        """A client for this store."""
        return MlflowClient(tracking_uri=self.tracking_uri)

    def experiment_id(self) -> str:
        """The tests' experiment, keeping artifacts under `artifact_root`."""
        found = self.client().get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return str(found.experiment_id)
        location = (self.artifact_root / EXPERIMENT).as_uri()
        return str(self.client().create_experiment(EXPERIMENT, location))

    def offline_predictions(self, name: str, version: str, frame: pd.DataFrame) -> list:
        """What ``mlflow.pyfunc.load_model(uri).predict(frame)`` gives offline."""
        uri = self.client().get_model_version_download_uri(name, version)
        return mlflow.pyfunc.load_model(uri).predict(frame).tolist()


def mixed_frame() -> tuple[pd.DataFrame, pd.Series]:
    """Breast cancer features, a string column with nulls, NaNs, string labels."""
    data = load_breast_cancer(as_frame=True)
    frame = data.data.astype("float64")
    frame.loc[frame.index % 17 == 0, "mean texture"] = np.nan
    clinic = np.where(frame["mean radius"] > 14, "north", "south").astype(object)
    clinic[frame.index % 5 == 0] = "east"
    clinic[frame.index % 23 == 0] = None
    frame[CATEGORICAL] = pd.Series(clinic, index=frame.index, dtype=object)
    labels = pd.Series(data.target_names[data.target], dtype=object, name="diagnosis")
    return frame, labels


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records: NaN becomes null."""
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.astype(object).to_dict(orient="records")
    ]


def _pipeline(frame: pd.DataFrame, estimator: Any) -> Pipeline:
    numeric = [c for c in frame.columns if c != CATEGORICAL]
    categorical = [c for c in frame.columns if c == CATEGORICAL]
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                numeric,
            ),
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("encode", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            ),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("model", estimator)])


def register_model(
    store: ModelStore, name: str, frame: pd.DataFrame, labels: pd.Series, estimator: Any
) -> str:
    """Fit a pipeline, log it as core.training does and register a version."""
    pipeline = _pipeline(frame, estimator).fit(frame, labels)
    inputs = Schema(
        [ColSpec("string" if c == CATEGORICAL else "double", c) for c in frame.columns]
    )
    label_type = "string" if labels.dtype == object else "long"
    signature = ModelSignature(inputs=inputs, outputs=Schema([ColSpec(label_type)]))
    packages = ("mlflow-skinny", "scikit-learn", "skops", "pandas", "numpy", "scipy")
    accuracy = float((pipeline.predict(frame) == labels).mean())
    metrics = {"accuracy": accuracy, "f1": accuracy - 0.01}
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store.tracking_uri)
    try:
        with mlflow.start_run(experiment_id=store.experiment_id()) as run:
            mlflow.log_metrics(metrics)
            info = mlflow.sklearn.log_model(
                pipeline,
                name="model",
                signature=signature,
                input_example=frame.head(3),
                skops_trusted_types=skops.io.get_untrusted_types(
                    data=skops.io.dumps(pipeline)
                ),
                pip_requirements=[f"{p}=={package_version(p)}" for p in packages],
                registered_model_name=name,
            )
    finally:
        mlflow.set_tracking_uri(previous)
    version = str(info.registered_model_version)
    store.run_ids[(name, version)] = run.info.run_id
    store.metrics[(name, version)] = metrics
    return version


def register_unsigned(store: ModelStore, fitted_on: str) -> str:
    """Log iris logistic regression as other code would: no signature, no example.

    `fitted_on` is "frame" (scikit-learn records the column names) or "array"
    (it records only their number). Registers a version of
    ``UNSIGNED_MODEL.format(fitted_on)``, aliases it staging, returns the name.
    """
    frame, labels = load_iris(return_X_y=True, as_frame=True)
    features = frame if fitted_on == "frame" else frame.to_numpy()
    model = LogisticRegression(max_iter=500).fit(features, labels)
    name = UNSIGNED_MODEL.format(fitted_on)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store.tracking_uri)
    try:
        with mlflow.start_run(experiment_id=store.experiment_id()):
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=name,
                pip_requirements=["scikit-learn"],  # skips MLflow's slow inference
            )
    finally:
        mlflow.set_tracking_uri(previous)
    version = str(info.registered_model_version)
    store.client().set_registered_model_alias(name, "staging", version)
    return name


def int_model_data() -> tuple[pd.DataFrame, pd.Series]:
    """Numbers only (no nulls) with integer labels 0/1."""
    frame, labels = mixed_frame()
    numbers = frame.drop(columns=[CATEGORICAL]).fillna(0.0)
    return numbers, (labels == "malignant").astype("int64")


def create_store(root: Path, migrated_db: Path) -> ModelStore:
    """An empty sqlite store with its artifacts under ``root/artifacts``."""
    shutil.copyfile(migrated_db, root / "mlflow.db")
    frame, _ = mixed_frame()
    return ModelStore(
        root=root,
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        artifact_root=root / "artifacts",
        holdout=frame.iloc[::7].head(60),
    )


@pytest.fixture(scope="session")
def model_store(
    tmp_path_factory: pytest.TempPathFactory, migrated_db: Path
) -> ModelStore:
    """Two registered models; staging of the mixed one points at version 1.

    Version 2 of the mixed model is the latest, so a server answering with
    version 1 proves it loads the aliased version, not the latest.
    """
    store = create_store(tmp_path_factory.mktemp("store"), migrated_db)
    frame, labels = mixed_frame()
    register_model(store, MIXED_MODEL, frame, labels, LogisticRegression(max_iter=500))
    register_model(
        store, MIXED_MODEL, frame, labels, HistGradientBoostingClassifier(max_iter=30)
    )
    numbers, classes = int_model_data()
    register_model(
        store,
        INT_MODEL,
        numbers,
        classes,
        RandomForestClassifier(n_estimators=20, random_state=0),
    )
    store.client().set_registered_model_alias(MIXED_MODEL, "staging", "1")
    store.client().set_registered_model_alias(MIXED_MODEL, "production", "2")
    return store


@dataclass
class ServingProcess:
    """``python -m serving`` started in its own process group."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_health(
        self, status: int = 200, timeout: float = 120.0
    ) -> dict[str, Any]:
        """Poll /health until it answers `status`; return its JSON."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                response = httpx.get(f"{self.url}/health", timeout=5)
                last = (response.status_code, response.text)
                if response.status_code == status:
                    body: dict[str, Any] = response.json()
                    return body
            except httpx.TransportError as error:
                last = error
            time.sleep(0.3)
        raise AssertionError(f"/health never answered {status}; last: {last}")

    def group_pids(self) -> list[int]:
        """Live processes of the server's process group (zombies excluded)."""
        found = subprocess.run(
            ["ps", "-o", "pid=,stat=", "-g", str(self.process.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split("\n")
        return [int(line.split()[0]) for line in found if line and "Z" not in line]

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after 20 s."""
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while self.group_pids() and time.monotonic() < deadline:
                time.sleep(0.2)
            if not self.group_pids():
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def start_server(
    log_dir: Path,
    model_name: str,
    alias: str,
    tracking_uri: str,
    extra_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ServingProcess:
    """Start the real server on a free loopback port, in its own process group."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "LIT_", "STUDIO_"))
    }
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        MODEL_NAME=model_name,
        MODEL_ALIAS=alias,
        MLFLOW_TRACKING_URI=tracking_uri,
        PORT=str(port),
        **(extra_env or {}),
    )
    log_path = log_dir / f"serving-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "serving"],
            env=env,
            cwd=cwd or log_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServingProcess(process, port, log_path)


@pytest.fixture(scope="session")
def staging_server(
    model_store: ModelStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingProcess]:
    """The mixed model's staging alias (version 1), batching up to 16 requests."""
    server = start_server(
        tmp_path_factory.mktemp("staging-server"),
        MIXED_MODEL,
        "staging",
        model_store.tracking_uri,
        {"BATCH_TIMEOUT": "0.05", "LOG_LEVEL": "debug"},
    )
    try:
        server.wait_for_health()
        yield server
    finally:
        server.stop()
