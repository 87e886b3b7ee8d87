"""Fixtures every test may use: temporary MLflow stores, trained versions, a real
`mlflow server` process, and small gate policies written for the test.

Stores are real (a sqlite file and an artifact folder). MLflow spends several
seconds migrating the schema of each new sqlite file, so one migrated file is
made per session and copied; the copy is an ordinary, fully working store.

Tests never rely on the shipped gate policy: `studio_env` pins a small policy
written into the test's own folder (accuracy >= 0.9), and `write_policy` writes
others.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from core import tags
from core.config import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCURACY_POLICY = [
    {"name": "accuracy", "kind": "metric", "metric": "accuracy", "threshold": 0.9}
]
# Tags `core.training` writes on a version; copied when a trained run is
# registered again under a test's own model name.
TRAINING_TAGS = (
    tags.STATUS,
    tags.GOLDEN_DIGEST,
    tags.RUN_DATASET,
    tags.RUN_ESTIMATOR,
    tags.RUN_ACTOR,
)
SERVER_START_SECONDS = 180.0

PolicyWriter = Callable[..., Path]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_policy_file(path: Path, checks: list[dict[str, Any]] | str) -> Path:
    """Write a gate policy: a list of check tables, or TOML/YAML text as is."""
    text = checks if isinstance(checks, str) else tomli_w.dumps({"checks": checks})
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def write_policy(tmp_path: Path) -> PolicyWriter:
    """Write a policy into the test's folder: `write_policy(checks, name=...)`."""

    def write(checks: list[dict[str, Any]] | str, name: str = "policy.toml") -> Path:
        return write_policy_file(tmp_path / name, checks)

    return write


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite tracking store with MLflow's schema, made once per session."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("migrated") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def new_store(root: Path, migrated_db: Path) -> Path:
    """Lay out a fresh embedded store (STUDIO_HOME) under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_db, root / "mlflow.db")
    return root


@pytest.fixture
def studio_env(tmp_path: Path, migrated_db: Path) -> dict[str, str]:
    """Environment of a fresh embedded store with the accuracy >= 0.9 policy."""
    home = new_store(tmp_path / "studio", migrated_db)
    policy = write_policy_file(tmp_path / "accuracy-policy.toml", ACCURACY_POLICY)
    return {
        "STUDIO_HOME": str(home),
        "STUDIO_GATE_POLICY": str(policy),
        "STUDIO_ACTOR": "tester",
    }


@pytest.fixture
def settings(studio_env: dict[str, str]) -> Settings:
    """Settings of a fresh, empty embedded store (see `studio_env`)."""
    return load_settings(studio_env)


@dataclass(frozen=True)
class Trained:
    """The session store and the versions trained into it once per session.

    Versions on breast_cancer, seed 42: 1 logistic regression (accuracy ~0.96,
    passes 0.9), 2 logistic regression with C=0.001 (~0.88, fails 0.9),
    3 a small random forest (passes 0.9).

    The store is shared: tests register these same runs again under model
    names of their own (`registered_versions`, `register_runs`), so a run may
    back many registered versions; only `studio-classifier` 1-3 are fixed.
    """

    env: dict[str, str]
    settings: Settings
    results: tuple[Any, ...]

    def run_id(self, version: str) -> str:
        """The training run behind session version `version`."""
        return str(self.results[int(version) - 1].run_id)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Trained:
    """Three quick versions trained once per session (see `Trained`)."""
    from core.training import TrainRequest, train

    home = new_store(tmp_path_factory.mktemp("session-store"), migrated_db)
    env = {"STUDIO_HOME": str(home), "STUDIO_ACTOR": "trainer"}
    settings = load_settings(env)
    requests = (
        TrainRequest("breast_cancer"),
        TrainRequest("breast_cancer", params={"C": 0.001}),
        TrainRequest(
            "breast_cancer",
            "random_forest",
            params={"n_estimators": 20, "max_depth": 4},
        ),
    )
    results = tuple(train(settings, request) for request in requests)
    return Trained(env=env, settings=settings, results=results)


@pytest.fixture
def model_env(
    trained: Trained, request: pytest.FixtureRequest, tmp_path: Path
) -> dict[str, str]:
    """Environment for a model of the test's own on the session store.

    Alias moves, gate results and audit events are kept per model name, so
    tests sharing the session store cannot see each other.
    """
    name = re.sub(r"[^a-zA-Z0-9-]+", "-", request.node.name)[:60].strip("-")
    policy = write_policy_file(tmp_path / "accuracy-policy.toml", ACCURACY_POLICY)
    return {
        **trained.env,
        "STUDIO_MODEL_NAME": f"test-{name}-{time.monotonic_ns() % 10**9}",
        "STUDIO_GATE_POLICY": str(policy),
        "STUDIO_ACTOR": "tester",
    }


@pytest.fixture
def model_settings(model_env: dict[str, str]) -> Settings:
    """Settings of the test's own model on the session store (see `model_env`)."""
    return load_settings(model_env)


def register_runs(
    settings: Settings, trained: Trained, versions: tuple[str, ...]
) -> list[str]:
    """Register the models of session versions under `settings.model_name`."""
    from mlflow.exceptions import MlflowException

    from core.tracking import client_for, fluent

    client = client_for(settings)
    try:
        client.create_registered_model(settings.model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source_client = client_for(trained.settings)
    registered = []
    for version in versions:
        source = source_client.get_model_version(trained.settings.model_name, version)
        copied = {k: v for k, v in source.tags.items() if k in TRAINING_TAGS}
        # The registry resolves a `models:/m-...` source through the fluent
        # tracking URI, not the client's.
        with fluent(settings):
            made = client.create_model_version(
                settings.model_name, source.source, run_id=source.run_id, tags=copied
            )
        registered.append(str(made.version))
    return registered


@pytest.fixture
def registered_versions(trained: Trained, model_settings: Settings) -> list[str]:
    """Versions 1-3 of the test's model: the session's trained runs, registered.

    Real registered versions of real logged models (same runs, metrics and
    golden sets as `trained`), made in a fraction of a second instead of
    training again. Nothing is gated or promoted yet.
    """
    return register_runs(model_settings, trained, ("1", "2", "3"))


@pytest.fixture(scope="session")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, migrated_db: Path
) -> Iterator[str]:
    """A real `mlflow server` on a free loopback port; yields its URL.

    Runs in its own process group with a sqlite backend and proxied artifacts
    (`--serve-artifacts`), and is stopped by its process group id at the end.
    """
    root = tmp_path_factory.mktemp("mlflow-server")
    shutil.copyfile(migrated_db, root / "mlflow.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # The server's job runner (huey consumers) is not needed and slows start-up.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log_path = root / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    try:
        _wait_healthy(url, process, log_path)
        yield url
    finally:
        stop_group(process)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"mlflow server not healthy in time:\n{log.read_text()[-3000:]}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a process group we started with start_new_session (id = its pid)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    # Children (uvicorn workers, model servers) share the group: end them too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture
def server_env(mlflow_server: str, tmp_path: Path) -> dict[str, str]:
    """Environment for a fresh model on the real server (own data dir, policy)."""
    home = tmp_path / "studio"
    home.mkdir()
    policy = write_policy_file(tmp_path / "accuracy-policy.toml", ACCURACY_POLICY)
    return {
        "STUDIO_HOME": str(home),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "STUDIO_MODEL_NAME": f"remote-{time.monotonic_ns() % 10**12}",
        "STUDIO_GATE_POLICY": str(policy),
        "STUDIO_ACTOR": "tester",
    }


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[Mapping[str, str]], None]:
    """Make a mapping the whole Studio environment of the test process.

    For code that reads `os.environ` itself, such as `core.cli.main`: Studio,
    MLflow tracking and gate variables of the developer's shell are removed.
    """

    def apply(env: Mapping[str, str]) -> None:
        for name in list(os.environ):
            if name.startswith(("STUDIO_", "MLFLOW_TRACKING_", "GATE_")) or name in (
                "ACCURACY_THRESHOLD",
            ):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

    return apply


@pytest.fixture
def foreign_version(model_settings: Settings) -> str:
    """A version logged by other code: plain sklearn, a logged accuracy, no golden
    set and no Studio tags. Registered under the test's own model name."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from core.tracking import ensure_experiment, fluent

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    experiment_id = ensure_experiment(model_settings, "foreign-code")
    with (
        fluent(model_settings),
        mlflow.start_run(experiment_id=experiment_id),
    ):
        mlflow.log_metric("accuracy", 0.95)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=model_settings.model_name,
            pip_requirements=["scikit-learn"],  # skips MLflow's slow inference
        )
    return str(info.registered_model_version)
