"""Fixtures for the app's page tests: real temporary stores seeded by core.

Pages run through Streamlit's AppTest against a real embedded MLflow store; no
part of core is mocked. Servers a test launches run as local processes on free
loopback ports and are stopped when the test ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.config import STAGES, Settings, load_settings
from core.deployment import backend_for
from core.tracking import client_for
from core.training import TrainRequest, train

# --- App pages (app.py, Overview, Gate what-if, Promote, Deployments, Audit) ---
# Each test gets its own embedded store (a copy of one migrated empty sqlite
# file: MLflow's migrations take seconds), free loopback ports and the process
# backend; Streamlit caches and the app's task board are cleared around it and
# any server it launched is stopped.

PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"
APP_TIMEOUT_S = 180.0


def page_file(name: str) -> str:
    """Absolute path of a page (AppTest resolves relative ones to the test file)."""
    return str(PAGES_DIR / f"{name}.py")


def open_page(name: str) -> AppTest:
    """Run a page once through AppTest and return it."""
    return AppTest.from_file(page_file(name), default_timeout=APP_TIMEOUT_S).run()


def open_app_page(name: str) -> AppTest:
    """Run a page through app.py's navigation (st.page_link needs the page list)."""
    at = AppTest.from_file(
        str(PAGES_DIR.parent / "app.py"), default_timeout=APP_TIMEOUT_S
    )
    return at.switch_page(f"pages/{name}.py").run()


def finish_tasks(at: AppTest, timeout: float = 240.0) -> AppTest:
    """Rerun the page until its background tasks end (fragments never poll)."""
    from pages import _components as ui

    deadline = time.monotonic() + timeout
    while ui.task_board().running():
        assert time.monotonic() < deadline, "a background task did not finish"
        time.sleep(0.5)
    return at.run()


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _clear_app_state() -> None:
    from pages import _components as ui

    ui.task_board().wait(timeout=APP_TIMEOUT_S)
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite file with its tables created and nothing in it."""
    root = tmp_path_factory.mktemp("empty-store")
    client_for(load_settings({"STUDIO_HOME": str(root)})).search_experiments()
    return root / "mlflow.db"


@pytest.fixture
def studio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_mlflow_db: Path
) -> Iterator[Settings]:
    """An empty store of this test, named by the environment the app reads."""
    home = tmp_path / "studio"
    home.mkdir()
    shutil.copy(empty_mlflow_db, home / "mlflow.db")
    for name in list(os.environ):
        if name.startswith(("STUDIO_", "GATE_")) or name in (
            "MLFLOW_TRACKING_URI",
            "ACCURACY_THRESHOLD",
        ):
            monkeypatch.delenv(name)
    staging, production = _free_ports(2)
    for name, value in {
        "STUDIO_HOME": str(home),
        "STUDIO_DEPLOY_BACKEND": "process",
        "STUDIO_STAGING_PORT": str(staging),
        "STUDIO_PRODUCTION_PORT": str(production),
        "STUDIO_ACTOR": "page-tests",
    }.items():
        monkeypatch.setenv(name, value)
    _clear_app_state()
    settings = load_settings()
    try:
        yield settings
    finally:
        _clear_app_state()
        for stage in STAGES:
            backend = backend_for(settings, stage)
            if backend.status(stage).is_up:
                backend.stop(stage)


@pytest.fixture
def seeded(studio: Settings) -> Settings:
    """The test's store with two versions (1 and 2) that pass the default gate."""
    for c in (1.0, 0.3):
        train(studio, TrainRequest(dataset="breast_cancer", params={"C": c}))
    return studio
