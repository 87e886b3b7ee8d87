"""``python -m serving`` as a process: signals, exit status, bad settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port
from tests.serving.conftest import MIXED_MODEL, ModelStore, ServingProcess, start_server

pytestmark = pytest.mark.serving


def wait_until_gone(server: ServingProcess, timeout: float = 30.0) -> list[int]:
    """Wait for every process of the server's group to exit; return survivors."""
    deadline = time.monotonic() + timeout
    while server.group_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    return server.group_pids()


@pytest.fixture
def server(model_store: ModelStore, tmp_path: Path) -> Iterator[ServingProcess]:
    started = start_server(
        tmp_path, MIXED_MODEL, "production", model_store.tracking_uri
    )
    yield started
    started.stop()


def test_sigterm_to_the_main_process_stops_the_whole_group(
    server: ServingProcess,
) -> None:
    server.wait_for_health()
    assert len(server.group_pids()) >= 4  # main, HTTP, worker, manager

    os.kill(server.process.pid, signal.SIGTERM)

    assert server.process.wait(timeout=40) == 0
    assert wait_until_gone(server) == []
    assert "SIGTERM received; shutting down" in server.log()


def test_sigterm_to_the_whole_group_exits_0_without_a_traceback(
    server: ServingProcess,
) -> None:
    # As `kill -- -PGID` does: LitServe's manager gets the signal too, and must
    # outlive the main process's shutdown, which still needs it.
    server.wait_for_health()

    os.killpg(server.process.pid, signal.SIGTERM)

    assert server.process.wait(timeout=40) == 0
    assert wait_until_gone(server) == []
    assert "Traceback" not in server.log()
    assert server.log().rstrip().endswith("serving.cli: server stopped")


def test_sigterm_while_starting_leaves_no_process_behind(tmp_path: Path) -> None:
    # Resolution against a closed port fails at once, so the signal lands while
    # LitServe is still spawning its worker.
    server = start_server(tmp_path, "m", "staging", f"http://127.0.0.1:{free_port()}")
    try:
        deadline = time.monotonic() + 60
        while "is unreachable" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)

        os.kill(server.process.pid, signal.SIGTERM)

        assert server.process.wait(timeout=40) == 0
        assert wait_until_gone(server) == []
    finally:
        server.stop()


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "serving", *args],
        env=clean | {"PYTHONPATH": str(REPO_ROOT)} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_tracking_uri_exits_2_with_what_to_set() -> None:
    done = run_cli("--model-name", "m", "--alias", "staging")

    assert done.returncode == 2
    assert "set --tracking-uri or MLFLOW_TRACKING_URI" in done.stderr


def test_port_already_in_use_exits_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = run_cli(
            f"--port={taken.getsockname()[1]}",
            "--model-name=m",
            "--alias=staging",
            f"--tracking-uri=http://127.0.0.1:{free_port()}",
        )

    assert done.returncode == 3  # uvicorn's start-up failure
    assert "address already in use" in done.stderr.lower()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_ALIAS": "prod"}, "--alias/MODEL_ALIAS must be one of 'staging'"),
        ({"PORT": "80"}, "--port/PORT must be an integer from 1024 to 65535; got '80'"),
        ({"HOST": "localhost"}, "--host/HOST must be one of '127.0.0.1'"),
        ({"BATCH_TIMEOUT": "fast"}, "--batch-timeout/BATCH_TIMEOUT must be a number"),
    ],
)
def test_bad_environment_value_exits_2_naming_flag_and_variable(
    env: dict[str, str], message: str
) -> None:
    base = {"MODEL_NAME": "m", "MODEL_ALIAS": "staging", "MLFLOW_TRACKING_URI": "x"}

    done = run_cli(**(base | env))

    assert done.returncode == 2
    assert message in done.stderr
