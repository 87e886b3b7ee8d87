"""The `process` backend: the model server as a local process on loopback.

Needs nothing beyond this checkout's virtualenv, so it is what a new user
without Docker gets. The server runs ``python -m serving`` from the checkout,
in its own process group, with its log and record under ``<data>/servers/``.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from core.config import PROJECT_ROOT, SECRET_ENV_VARS, Settings, Stage
from core.deployment import processes
from core.deployment.base import (
    DEFAULT_LAUNCH_TIMEOUT_S,
    LOG_TAIL_LINES,
    Progress,
    ServerStatus,
    announce,
    fetch_health,
    now_iso,
    parse_time,
    read_record,
    require_alias,
    require_launch_timeout,
    require_port,
    server_url,
    servers_dir,
    stage_lock,
    wait_until_healthy,
    write_record,
)
from core.errors import DeploymentError

logger = logging.getLogger(__name__)


class ProcessBackend:
    """Runs each stage's server as a detached local process.

    Args:
        settings: where the store is and which host and ports to serve on.
        launch_timeout: seconds `launch` waits for a healthy /health.

    Raises:
        DeploymentError: `launch_timeout` is too short for any server.
    """

    name = "process"

    def __init__(
        self, settings: Settings, launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT_S
    ) -> None:
        self.settings = settings
        self.launch_timeout = require_launch_timeout(launch_timeout)

    def prepare(self, stage: Stage, progress: Progress | None = None) -> None:
        """Check that the stage's alias is set and its port is free or ours.

        Raises:
            DeploymentError: the alias is unset, or another program holds the
                port.
        """
        with stage_lock(self.settings, stage):
            self._prepare(stage)

    def launch(self, stage: Stage, progress: Progress | None = None) -> ServerStatus:
        """Start the stage's server (replacing ours if it runs) and wait for health.

        Raises:
            DeploymentError: the alias is unset, the port is taken by another
                program, or the server did not become healthy (the message
                quotes its last log lines; the failed server is stopped).
        """
        say = announce(progress)
        with stage_lock(self.settings, stage):
            version = self._prepare(stage)
            self._stop_previous(stage, say)
            say(f"Starting the {stage} server for version {version} as a process")
            spawned = self._spawn(stage)
            url = server_url(self.settings, stage)
            try:
                health = wait_until_healthy(
                    url,
                    timeout=self.launch_timeout,
                    gone=lambda: self._gone(spawned),
                    log_tail=lambda: self.logs(stage, LOG_TAIL_LINES),
                    say=say,
                )
            except DeploymentError:
                processes.stop_group(spawned.pid, spawned.token)
                self._mark_stopped(stage, "failed to become healthy")
                raise
        say(
            f"{stage} server up at {url} (pid {spawned.pid}), serving version "
            f"{health.get('model_version')}"
        )
        return self.status(stage)

    def start(self, stage: Stage) -> ServerStatus:
        """Spawn the stage's server without waiting for it or checking the alias.

        For callers that watch /health themselves (a server whose alias is
        unset answers 503 with the reason).
        """
        with stage_lock(self.settings, stage):
            self._stop_previous(stage, announce(None))
            self._spawn(stage)
        return self.status(stage)

    def restart(self, stage: Stage, progress: Progress | None = None) -> ServerStatus:
        """Launch again; `launch` already replaces a running server of ours."""
        return self.launch(stage, progress)

    def stop(self, stage: Stage) -> ServerStatus:
        """Stop the stage's server (its whole process group) if it is ours."""
        with stage_lock(self.settings, stage):
            record = self._record(stage)
            if record is not None and record.get("state") == "running":
                pid, token = int(record["pid"]), str(record["token"])
                if processes.stop_group(pid, token):
                    logger.info("Stopped the %s server (pid %d)", stage, pid)
                self._mark_stopped(stage, "stopped on request")
        return self.status(stage)

    def status(self, stage: Stage) -> ServerStatus:
        """Read the record and check that its process still runs and is ours."""
        record = self._record(stage)
        url = server_url(self.settings, stage)
        if record is None:
            return self._status(
                stage,
                "missing",
                None,
                None,
                f"no {stage} server launched yet; run python -m core deploy "
                f"--stage {stage}",
            )
        pid, token = int(record["pid"]), str(record["token"])
        started = parse_time(record.get("started_at"))
        if record.get("state") == "stopped":
            return self._status(
                stage,
                "stopped",
                None,
                started,
                f"pid {pid} {record.get('stop_reason', 'stopped')} at "
                f"{record.get('stopped_at', '?')}",
            )
        if not processes.is_ours(pid, token):
            leftover = processes.owns_group(pid, token)
            detail = f"pid {pid} exited; see python -m core logs --stage {stage}"
            if leftover:
                detail += " (some of its workers remain; stop cleans them up)"
            return self._status(stage, "exited", str(pid), started, detail)
        code, body = fetch_health(url, timeout=1.0)
        where = f"pid {pid} on port {record['port']}"
        if code == 200:
            return self._status(
                stage,
                "running",
                str(pid),
                started,
                f"{where}, serving version {body.get('model_version')}",
            )
        waiting = body.get("detail") or "not answering yet"
        return self._status(
            stage, "starting", str(pid), started, f"{where}, not ready: {waiting}"
        )

    def logs(self, stage: Stage, lines: int = 200) -> str:
        """The last `lines` lines of the stage's server log."""
        return processes.read_log_tail(self._log_path(stage), lines)

    def _prepare(self, stage: Stage) -> str:
        version = require_alias(self.settings, stage)
        require_port(self.settings, stage, self.name, replacing=True)
        return version

    def _spawn(self, stage: Stage) -> processes.Spawned:
        require_port(self.settings, stage, self.name)
        host, port = self.settings.serve_host, self.settings.port_for(stage)
        argv = [
            sys.executable,
            "-m",
            "serving",
            "--model-name",
            self.settings.model_name,
            "--alias",
            stage,
            "--host",
            host,
            "--port",
            str(port),
        ]
        spawned = processes.spawn(
            argv, env=self._env(), cwd=PROJECT_ROOT, log_path=self._log_path(stage)
        )
        write_record(
            self.settings,
            stage,
            {
                "backend": self.name,
                "stage": stage,
                "state": "running",
                "pid": spawned.pid,
                "token": spawned.token,
                "cmdline": spawned.cmdline,
                "host": host,
                "port": port,
                "url": server_url(self.settings, stage),
                "log": str(self._log_path(stage)),
                "started_at": now_iso(),
            },
        )
        logger.debug("Spawned %s as pid %d", spawned.cmdline, spawned.pid)
        return spawned

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # The tracking URI goes through the environment, not argv: it may embed
        # credentials, and argv is visible to every user in `ps`.
        env["MLFLOW_TRACKING_URI"] = self.settings.tracking_uri
        for name in ("MODEL_NAME", "MODEL_ALIAS", "HOST", "PORT"):
            env.pop(name, None)  # flags decide; stale variables must not leak in
        for name in SECRET_ENV_VARS:
            if name in os.environ:
                env[name] = os.environ[name]
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _stop_previous(self, stage: Stage, say: Progress) -> None:
        record = self._record(stage)
        if record is None or record.get("state") != "running":
            return
        pid, token = int(record["pid"]), str(record["token"])
        if processes.owns_group(pid, token):
            say(f"Stopping the running {stage} server (pid {pid}) to replace it")
            processes.stop_group(pid, token)
        self._mark_stopped(stage, "replaced")

    def _gone(self, spawned: processes.Spawned) -> str | None:
        if processes.is_ours(spawned.pid, spawned.token):
            return None
        return f"(pid {spawned.pid}) exited"

    def _mark_stopped(self, stage: Stage, reason: str) -> None:
        record = self._record(stage) or {}
        record.update(state="stopped", stopped_at=now_iso(), stop_reason=reason)
        write_record(self.settings, stage, record)

    def _record(self, stage: Stage) -> dict[str, Any] | None:
        record = read_record(self.settings, stage)
        if record is None or record.get("backend") != self.name:
            return None
        return record

    def _log_path(self, stage: Stage) -> Path:
        return servers_dir(self.settings) / f"{stage}.log"

    def _status(
        self,
        stage: Stage,
        state: str,
        ident: str | None,
        started: datetime | None,
        detail: str,
    ) -> ServerStatus:
        return ServerStatus(
            stage=stage,
            backend=self.name,
            state=state,
            url=server_url(self.settings, stage),
            ident=ident,
            started_at=started,
            detail=detail,
        )
