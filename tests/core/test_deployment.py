"""The process backend for real: launch, status, logs, stop, and its refusals."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from core.config import Settings, load_settings
from core.deployment import (
    DockerBackend,
    ProcessBackend,
    ServerStatus,
    backend_for,
    describe_choice,
    get_backend,
)
from core.deployment.base import read_record, write_record
from core.deployment.processes import group_exists, start_token
from core.deployment.tracking_server import (
    Dependent,
    ensure_tracking_server,
    is_tracking_server_running,
    stop_tracking_server,
)
from core.errors import ConfigError, DeploymentError
from tests.conftest import free_port
from tests.core.conftest import Store

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def unset_production(store: Store) -> Iterator[ServerStatus]:
    """A production server started while production points to no version."""
    backend = ProcessBackend(store.settings)
    status = backend.start("production")
    try:
        yield status
    finally:
        backend.stop("production")


@pytest.fixture
def tracking(store: Store) -> Iterator[Settings]:
    """The store's local tracking server, listening on loopback."""
    settings = replace(store.settings, data_dir=store.settings.data_dir / "tracking")
    ensure_tracking_server(settings, "127.0.0.1")
    try:
        yield settings
    finally:
        stop_tracking_server(settings)


def wait_for_answer(url: str, seconds: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        try:
            response = httpx.get(f"{url}/health", timeout=2.0)
            if response.status_code != 503 or response.json().get("status") == "error":
                return response
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.5)


def test_launch_serves_the_staging_alias_version(
    store: Store, staging: ServerStatus
) -> None:
    assert staging.state == "running"
    health = httpx.get(f"{staging.url}/health").json()
    assert health["stage"] == "staging"
    assert health["model_version"] == store.versions[0]


def test_status_is_found_again_by_a_new_backend(
    store: Store, staging: ServerStatus
) -> None:
    # As after an app restart: nothing in memory, only the record on disk.
    status = ProcessBackend(load_settings(store.env)).status("staging")
    assert (status.state, status.ident) == ("running", staging.ident)
    assert f"serving version {store.versions[0]}" in status.detail


def test_logs_show_the_servers_start_line(store: Store, staging: ServerStatus) -> None:
    backend = ProcessBackend(store.settings)
    assert f"version {store.versions[0]}" in backend.logs("staging")
    assert len(backend.logs("staging", lines=3).splitlines()) == 3


def test_record_keeps_pid_and_start_token(store: Store, staging: ServerStatus) -> None:
    record = read_record(store.settings, "staging")
    assert record is not None
    assert str(record["pid"]) == staging.ident
    assert record["token"] == start_token(int(record["pid"]))


def test_launch_refuses_an_unset_alias(store: Store) -> None:
    unset = f"production of {store.settings.model_name} is not set"
    with pytest.raises(DeploymentError, match=unset):
        ProcessBackend(store.settings).launch("production")


def test_health_is_503_with_the_reason_when_the_alias_is_missing(
    unset_production: ServerStatus,
) -> None:
    assert unset_production.url is not None
    response = wait_for_answer(unset_production.url)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error"
    assert "production" in body["detail"]


def test_stop_ends_every_process_of_the_server(
    store: Store, unset_production: ServerStatus
) -> None:
    assert unset_production.ident is not None
    wait_for_answer(str(unset_production.url))  # its workers have started
    stopped = ProcessBackend(store.settings).stop("production")
    assert stopped.state == "stopped"
    assert not group_exists(int(unset_production.ident))


def test_launch_refuses_a_port_taken_by_another_program(store: Store) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = replace(store.settings, staging_port=other.getsockname()[1])
        with pytest.raises(DeploymentError, match="in use by another program"):
            ProcessBackend(taken).launch("staging")


def test_prepare_accepts_the_port_of_the_stages_own_server(
    store: Store, staging: ServerStatus
) -> None:
    ProcessBackend(store.settings).prepare("staging")
    status = ProcessBackend(store.settings).status("staging")
    assert (status.state, status.ident) == ("running", staging.ident)


def test_prepare_refuses_a_port_taken_by_another_program(
    store: Store, staging: ServerStatus
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = replace(store.settings, staging_port=other.getsockname()[1])
        with pytest.raises(DeploymentError, match="in use by another program"):
            ProcessBackend(taken).prepare("staging")
    assert ProcessBackend(store.settings).status("staging").ident == staging.ident


@pytest.mark.parametrize("backend", [ProcessBackend, DockerBackend])
@pytest.mark.parametrize("timeout", [0.0, 0.5, -1.0, float("nan")])
def test_launch_timeout_below_one_second_is_refused(
    tmp_path: Path, backend: type[ProcessBackend | DockerBackend], timeout: float
) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})
    with pytest.raises(DeploymentError) as refused:
        backend(settings, timeout)
    assert str(refused.value) == (
        f"a launch timeout of {timeout:g} s leaves no time for a server to load "
        "its model; use at least 1 s (the default is 120 s)."
    )


def test_tracking_server_stays_put_while_a_container_uses_it(
    tracking: Settings,
) -> None:
    user = Dependent("production", "promotion-studio-production-abc", "host")
    with pytest.raises(DeploymentError) as refused:
        ensure_tracking_server(tracking, "127.0.0.2", dependents=lambda: [user])
    assert str(refused.value) == (
        "the local MLflow tracking server listens on 127.0.0.1 for the production "
        "container promotion-studio-production-abc (STUDIO_DOCKER_NETWORK=host); "
        "moving it to 127.0.0.2 would leave that container unable to reach the "
        "registry. Deploy with STUDIO_DOCKER_NETWORK=host as well, or stop that "
        "container first (python -m core stop --stage production)."
    )
    assert (read_record(tracking, "tracking") or {})["host"] == "127.0.0.1"
    assert is_tracking_server_running(tracking)


def test_tracking_server_moves_when_no_container_uses_it(tracking: Settings) -> None:
    url = ensure_tracking_server(tracking, "127.0.0.2", dependents=list)
    assert url == f"http://127.0.0.2:{tracking.tracking_server_port}"
    assert httpx.get(f"{url}/health").status_code == 200


def test_failed_launch_quotes_the_servers_last_log_lines(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server refuses MAX_BATCH_SIZE=0 at start and exits with a usage error.
    monkeypatch.setenv("MAX_BATCH_SIZE", "0")
    settings = replace(store.settings, staging_port=free_port())
    with pytest.raises(DeploymentError) as failure:
        ProcessBackend(settings).launch("staging")
    message = str(failure.value)
    assert "exited before becoming healthy" in message
    assert "MAX_BATCH_SIZE must be an integer" in message


def test_stop_never_signals_a_pid_that_is_no_longer_ours(store: Store) -> None:
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        settings = replace(store.settings, data_dir=store.settings.data_dir / "other")
        write_record(
            settings,
            "production",
            {
                "backend": "process",
                "state": "running",
                "pid": stranger.pid,
                "token": "not-its-start-time",
                "port": settings.production_port,
            },
        )
        assert ProcessBackend(settings).status("production").state == "exited"
        ProcessBackend(settings).stop("production")
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_status_of_a_stage_never_launched_is_missing(tmp_path: Path) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})
    status = ProcessBackend(settings).status("production")
    assert status.state == "missing"
    assert "python -m core deploy --stage production" in status.detail


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("process", "process (--backend=process)"),
        ("docker", "docker (--backend=docker)"),
    ],
)
def test_describe_choice_names_an_explicit_backend(
    tmp_path: Path, requested: str, expected: str
) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})
    assert describe_choice(settings, requested) == expected


def test_auto_falls_back_to_process_without_an_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})
    assert describe_choice(settings).startswith("process (no Docker engine: ")
    assert get_backend(settings).name == "process"


def test_unknown_backend_is_refused(tmp_path: Path) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="unknown backend 'podman'"):
        get_backend(settings, "podman")


def test_backend_for_follows_the_record(store: Store, staging: ServerStatus) -> None:
    settings = replace(store.settings, deploy_backend="docker")
    assert backend_for(settings, "staging").name == "process"


def test_status_as_dict_is_json(staging: ServerStatus) -> None:
    data = json.loads(json.dumps(staging.as_dict()))
    assert data["backend"] == "process"
    assert data["ident"] == staging.ident
