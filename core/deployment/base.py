"""What every deployment backend shares: the status type, records and health waits.

A backend keeps one JSON record per stage under ``<data>/servers/`` saying what
it launched (pid or container, port, when). The record is how a later process
(the CLI after the app, the app after a restart) finds the server again, and
how `status` tells "stopped by us" from "never launched".
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from core.config import Settings, Stage
from core.errors import DeploymentError
from core.registry import alias_version

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]
STATES = ("running", "starting", "stopped", "exited", "missing")
DEFAULT_LAUNCH_TIMEOUT_S = 120.0
# No server loads a model and answers /health that fast; a shorter wait can only
# fail, and it fails after the running server was already replaced.
MIN_LAUNCH_TIMEOUT_S = 1.0
POLL_INTERVAL_S = 0.5
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class ServerStatus:
    """Where a stage's server stands, as one backend sees it.

    Attributes:
        stage: `staging` or `production`.
        backend: `docker` or `process`.
        state: one of `STATES`.
        url: the address probes use, e.g. ``http://127.0.0.1:8000``.
        ident: the pid or short container id, when there is one.
        started_at: when the server was launched, when known.
        detail: one human sentence, e.g. "pid 1234 on port 8000".
    """

    stage: Stage
    backend: str
    state: str
    url: str | None
    ident: str | None
    started_at: datetime | None
    detail: str

    @property
    def is_up(self) -> bool:
        """True while the server process or container exists (ready or not)."""
        return self.state in ("running", "starting")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "stage": self.stage,
            "backend": self.backend,
            "state": self.state,
            "url": self.url,
            "ident": self.ident,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "detail": self.detail,
        }


class Backend(Protocol):
    """Launches, stops and inspects the model server of one stage."""

    name: str

    def prepare(self, stage: Stage, progress: Progress | None = None) -> None:
        """Check everything a launch needs, leaving the running server alone.

        Callers replacing a server of another backend run this before they
        stop it, so a launch that cannot start never leaves the stage dark.
        """
        ...

    def launch(self, stage: Stage, progress: Progress | None = None) -> ServerStatus:
        """Start (or replace) the stage's server and wait until it is healthy."""
        ...

    def stop(self, stage: Stage) -> ServerStatus:
        """Stop the stage's server if one of ours runs."""
        ...

    def restart(self, stage: Stage, progress: Progress | None = None) -> ServerStatus:
        """Stop and launch again, e.g. to serve a newly promoted version."""
        ...

    def status(self, stage: Stage) -> ServerStatus:
        """Where the stage's server stands now."""
        ...

    def logs(self, stage: Stage, lines: int = 200) -> str:
        """The last `lines` lines the server wrote."""
        ...


def server_url(settings: Settings, stage: Stage) -> str:
    """The URL the host uses to reach a stage's server."""
    host = settings.serve_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # a wildcard bind is reached through loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port_for(stage)}"


def servers_dir(settings: Settings) -> Path:
    """Where records, locks and logs of launched servers live."""
    path = settings.data_dir / "servers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_record(settings: Settings, name: str) -> dict[str, Any] | None:
    """The record kept for `name` (a stage or "tracking"), or None."""
    path = servers_dir(settings) / f"{name}.json"
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        logger.warning("Ignoring unreadable server record %s: %s", path, exc)
        return None
    return loaded


def write_record(settings: Settings, name: str, record: dict[str, Any]) -> None:
    """Replace the record for `name` atomically."""
    path = servers_dir(settings) / f"{name}.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    os.replace(temporary, path)


@contextmanager
def stage_lock(settings: Settings, name: str) -> Iterator[None]:
    """Serialize launches and stops of one stage across processes (app and CLI)."""
    path = servers_dir(settings) / f"{name}.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def now_iso() -> str:
    """The current UTC time for records."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(text: str | None) -> datetime | None:
    """Read a time written by `now_iso` (None stays None)."""
    return datetime.fromisoformat(text) if text else None


def is_port_free(host: str, port: int) -> bool:
    """True when nothing listens on `host:port` (we could bind it ourselves)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise DeploymentError(
                f"cannot check port {port} on {host}: {exc}; set STUDIO_SERVE_HOST "
                "to an address of this machine."
            ) from exc
    return True


def require_launch_timeout(timeout: float) -> float:
    """The launch timeout, refused when no server could be healthy within it.

    Raises:
        DeploymentError: the timeout is below `MIN_LAUNCH_TIMEOUT_S` (or NaN).
    """
    if not timeout >= MIN_LAUNCH_TIMEOUT_S:
        raise DeploymentError(
            f"a launch timeout of {timeout:g} s leaves no time for a server to load "
            f"its model; use at least {MIN_LAUNCH_TIMEOUT_S:g} s (the default is "
            f"{DEFAULT_LAUNCH_TIMEOUT_S:g} s)."
        )
    return timeout


def require_port(
    settings: Settings, stage: Stage, backend: str, *, replacing: bool = False
) -> None:
    """Refuse to launch when the stage's port is taken by something not ours.

    Args:
        replacing: accept a port held by the stage's own server, whichever
            backend launched it, because the caller stops that server before
            the new one starts.

    Raises:
        DeploymentError: the port is in use; the message says by what, when we
            know (a server of the other backend), and how to free it.
    """
    host, port = settings.serve_host, settings.port_for(stage)
    if is_port_free("127.0.0.1" if host in ("0.0.0.0", "") else host, port):
        return
    record = read_record(settings, stage) or {}
    if replacing and record.get("state") == "running" and record.get("port") == port:
        return
    if record.get("state") == "running" and record.get("backend") != backend:
        raise DeploymentError(
            f"port {port} is held by the {stage} server the {record.get('backend')} "
            f"backend launched; stop it first (python -m core stop --stage {stage})."
        )
    raise DeploymentError(
        f"port {port} on {host} is in use by another program (not a Promotion "
        f"Studio {stage} server); stop it, or set STUDIO_{stage.upper()}_PORT to "
        "a free port."
    )


def require_alias(settings: Settings, stage: Stage) -> str:
    """The version the stage's alias points to, refusing to launch when unset.

    Raises:
        DeploymentError: the alias is not set, so a server would only say so.
    """
    version = alias_version(settings, stage)
    if version is None:
        raise DeploymentError(
            f"{stage} of {settings.model_name} is not set, so a {stage} server would "
            f"have nothing to serve; promote a version first (python -m core "
            f"promote VERSION --to {stage})."
        )
    return version


def fetch_health(url: str, timeout: float = 2.0) -> tuple[int | None, dict[str, Any]]:
    """GET ``/health``: the status code (None when unreachable) and its JSON."""
    try:
        response = httpx.get(f"{url}/health", timeout=timeout)
    except httpx.HTTPError:
        return None, {}
    try:
        body = response.json()
    except ValueError:
        body = {}
    return response.status_code, body if isinstance(body, dict) else {}


def wait_until_healthy(
    url: str,
    *,
    timeout: float,
    gone: Callable[[], str | None],
    log_tail: Callable[[], str],
    say: Progress,
) -> dict[str, Any]:
    """Poll `url`/health until it answers 200; return its JSON.

    Args:
        url: the server's base URL.
        timeout: seconds to wait in all.
        gone: returns why the server is gone (exited, removed) or None while up.
        log_tail: the server's last log lines, quoted when the wait fails.
        say: progress callback, told whenever the server's answer changes.

    Raises:
        DeploymentError: the server went away or was not healthy in time.
    """
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    last_seen = ""
    while True:
        reason = gone()
        if reason is not None:
            raise DeploymentError(
                f"the server at {url} {reason} before becoming healthy."
                f"{_quoted(log_tail())}"
            )
        code, body = fetch_health(url)
        if code == 200:
            return body
        seen = (
            "not answering yet"
            if code is None
            else f"{body.get('status', code)}: {body.get('detail') or 'no detail'}"
        )
        if seen != last_seen:
            waited = time.monotonic() - started
            say(f"Waiting for {url}/health ({waited:.0f} s): {seen}")
            last_seen = seen
        if time.monotonic() >= deadline:
            raise DeploymentError(
                f"the server at {url} was not healthy within {timeout:g} s (last "
                f"answer: {seen}).{_quoted(log_tail())}"
            )
        time.sleep(POLL_INTERVAL_S)


def tail(text: str, lines: int) -> str:
    """The last `lines` lines of `text`."""
    return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""


def _quoted(log_tail: str) -> str:
    if not log_tail.strip():
        return " The server wrote no log lines."
    indented = "\n".join(f"  | {line}" for line in log_tail.splitlines())
    return f" Its last log lines:\n{indented}"


class _Announcer:
    """Logs a progress message at INFO, then hands it to the caller's callback."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress

    def __call__(self, message: str) -> None:
        logger.info("%s", message)
        if self.progress is not None:
            self.progress(message)


def announce(progress: Progress | None) -> Progress:
    """A progress callback that also logs each message at INFO.

    Layers pass their callback down (release → deploy → launch); one that
    already logs is returned as is, so each message is logged once.
    """
    if isinstance(progress, _Announcer):
        return progress
    return _Announcer(progress)
