"""A local ``mlflow server`` over the embedded store, for containers to reach.

A container cannot open the host's sqlite file or read model files under the
host's artifact folder. When the store is embedded, the docker backend starts
``mlflow server`` over the same sqlite file with ``--serve-artifacts`` on the
same artifact folder, and points containers at it: the registry answers over
HTTP, and artifacts are fetched through MLflow's proxy (``mlflow-artifacts:``).
The server is tracked by pid exactly like a process-backend model server.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.config import PROJECT_ROOT, Settings
from core.deployment import processes
from core.deployment.base import (
    Progress,
    announce,
    is_port_free,
    now_iso,
    read_record,
    servers_dir,
    stage_lock,
    write_record,
)
from core.errors import DeploymentError

logger = logging.getLogger(__name__)

RECORD = "tracking"
START_TIMEOUT_S = 180.0
# Names a container may use in the Host header when calling the server. MLflow
# 3 rejects other Host headers (DNS-rebinding protection); its default already
# admits localhost and private addresses such as the docker0 gateway.
CONTAINER_HOST_NAMES = ("host.docker.internal",)


@dataclass(frozen=True)
class Dependent:
    """A running container of ours that reaches the tracking server where it is.

    Attributes:
        stage: the stage the container serves.
        name: the container's name.
        network: its STUDIO_DOCKER_NETWORK mode, `host` or `bridge`.
    """

    stage: str
    name: str
    network: str


Dependents = Callable[[], Sequence[Dependent]]


def tracking_server_url(settings: Settings, host: str) -> str:
    """The URL of the local tracking server as seen from `host`'s side."""
    return f"http://{host}:{settings.tracking_server_port}"


def ensure_tracking_server(
    settings: Settings,
    bind_host: str,
    progress: Progress | None = None,
    *,
    dependents: Dependents | None = None,
) -> str:
    """Start the local tracking server on `bind_host` unless ours already runs.

    Args:
        settings: the embedded store to serve.
        bind_host: the address containers reach it at (loopback or docker0).
        progress: told when the server starts or moves.
        dependents: lists the containers that would lose the server if it
            moved off its current address; asked only when it would move.

    Returns:
        The URL the host reaches it at.

    Raises:
        DeploymentError: the store is not embedded, the server listens
            elsewhere for a running container, the port is taken by another
            program, or the server did not answer in time.
    """
    if not settings.is_embedded:
        raise DeploymentError(
            f"the tracking store {settings.redacted_tracking_uri()} is already a "
            "server; containers use it directly."
        )
    say = announce(progress)
    with stage_lock(settings, RECORD):
        record = read_record(settings, RECORD)
        if _is_running(record) and record is not None:
            if record.get("host") == bind_host:
                return _local_url(settings, bind_host)
            _refuse_to_strand(
                str(record.get("host")), bind_host, dependents() if dependents else []
            )
            say("Restarting the local tracking server to listen on " + bind_host)
            processes.stop_group(int(record["pid"]), str(record["token"]))
        port = settings.tracking_server_port
        if not is_port_free(bind_host, port):
            raise DeploymentError(
                f"port {port} on {bind_host} is in use by another program, so the "
                "local MLflow tracking server for containers cannot start there; "
                "stop that program or set STUDIO_TRACKING_PORT to a free port."
            )
        say(
            f"Starting a local MLflow tracking server on {bind_host}:{port} so "
            "containers can read the registry and download artifacts through it"
        )
        spawned = processes.spawn(
            _argv(settings, bind_host),
            env=_env(),
            cwd=PROJECT_ROOT,
            log_path=log_path(settings),
        )
        write_record(
            settings,
            RECORD,
            {
                "backend": "process",
                "state": "running",
                "pid": spawned.pid,
                "token": spawned.token,
                "host": bind_host,
                "port": port,
                "started_at": now_iso(),
            },
        )
        url = _local_url(settings, bind_host)
        try:
            _wait_ready(url, spawned, settings)
        except DeploymentError:
            processes.stop_group(spawned.pid, spawned.token)
            _mark_stopped(settings)
            raise
    say(f"Local MLflow tracking server up at {url} (pid {spawned.pid})")
    return url


def stop_tracking_server(settings: Settings) -> bool:
    """Stop the local tracking server if ours runs; True when one was stopped."""
    with stage_lock(settings, RECORD):
        record = read_record(settings, RECORD)
        if record is None or record.get("state") != "running":
            return False
        stopped = processes.stop_group(int(record["pid"]), str(record["token"]))
        _mark_stopped(settings)
    if stopped:
        logger.info("Stopped the local MLflow tracking server (pid %s)", record["pid"])
    return stopped


def is_tracking_server_running(settings: Settings) -> bool:
    """True while the local tracking server we started runs."""
    return _is_running(read_record(settings, RECORD))


def log_path(settings: Settings) -> Path:
    """Where the local tracking server writes its log."""
    return servers_dir(settings) / "tracking.log"


def _refuse_to_strand(
    current: str, wanted: str, dependents: Sequence[Dependent]
) -> None:
    # A container is given the tracking address once, in MLFLOW_TRACKING_URI;
    # after a move it answers 503 "tracking server unreachable" on its next
    # start (a restart policy or an engine restart), with nothing to fix it.
    if not dependents:
        return
    names = ", ".join(
        f"the {d.stage} container {d.name} (STUDIO_DOCKER_NETWORK={d.network})"
        for d in dependents
    )
    stops = " and ".join(f"python -m core stop --stage {d.stage}" for d in dependents)
    them = "that container" if len(dependents) == 1 else "those containers"
    raise DeploymentError(
        f"the local MLflow tracking server listens on {current} for {names}; "
        f"moving it to {wanted} would leave {them} unable to reach the registry. "
        f"Deploy with STUDIO_DOCKER_NETWORK={dependents[0].network} as well, or "
        f"stop {them} first ({stops})."
    )


def _argv(settings: Settings, bind_host: str) -> list[str]:
    port = settings.tracking_server_port
    allowed = ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", bind_host]
    allowed += [f"{bind_host}:*"]
    for name in CONTAINER_HOST_NAMES:
        allowed += [name, f"{name}:*"]
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        settings.tracking_uri,
        "--artifacts-destination",
        settings.artifact_root.as_uri(),
        "--serve-artifacts",
        "--host",
        bind_host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--allowed-hosts",
        ",".join(dict.fromkeys(allowed)),
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # `mlflow server` finds uvicorn/gunicorn by name; use this venv's copies.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Its job runner (huey consumers) serves nothing containers need and slows
    # the start by many seconds.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def _wait_ready(url: str, spawned: processes.Spawned, settings: Settings) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not processes.is_ours(spawned.pid, spawned.token):
            raise DeploymentError(
                f"the local MLflow tracking server exited at start. Its last log "
                f"lines:\n{processes.read_log_tail(log_path(settings), 20)}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise DeploymentError(
        f"the local MLflow tracking server at {url} did not answer within "
        f"{START_TIMEOUT_S:g} s. Its last log lines:\n"
        f"{processes.read_log_tail(log_path(settings), 20)}"
    )


def _is_running(record: dict[str, Any] | None) -> bool:
    if record is None or record.get("state") != "running":
        return False
    return processes.is_ours(int(record["pid"]), str(record["token"]))


def _local_url(settings: Settings, bind_host: str) -> str:
    host = "127.0.0.1" if bind_host in ("0.0.0.0", "") else bind_host
    return tracking_server_url(settings, host)


def _mark_stopped(settings: Settings) -> None:
    record = read_record(settings, RECORD) or {}
    record.update(state="stopped", stopped_at=now_iso())
    write_record(settings, RECORD, record)
