"""Launch, stop and inspect the staging and production model servers.

Two backends share one interface (`Backend`): `docker` runs the serving image
as labelled containers, `process` runs ``python -m serving`` as local
processes. `get_backend` honours STUDIO_DEPLOY_BACKEND; ``auto`` picks Docker
when an engine answers and says why through `describe_choice`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.config import BACKENDS, Settings, Stage
from core.deployment.base import (
    DEFAULT_LAUNCH_TIMEOUT_S,
    MIN_LAUNCH_TIMEOUT_S,
    Backend,
    Progress,
    ServerStatus,
    read_record,
    server_url,
)
from core.deployment.containers import DockerBackend, engine_version
from core.deployment.process import ProcessBackend
from core.errors import BackendUnavailableError, ConfigError

__all__ = [
    "BACKENDS",
    "DEFAULT_LAUNCH_TIMEOUT_S",
    "MIN_LAUNCH_TIMEOUT_S",
    "Backend",
    "Choice",
    "DockerBackend",
    "ProcessBackend",
    "Progress",
    "ServerStatus",
    "backend_for",
    "choose",
    "describe_choice",
    "get_backend",
    "server_url",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """Which backend to use and the sentence that says why."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def choose(settings: Settings, requested: str | None = None) -> Choice:
    """Resolve ``auto`` to a backend by asking the Docker engine (short timeout).

    Args:
        requested: overrides STUDIO_DEPLOY_BACKEND (e.g. the CLI's --backend).

    Raises:
        ConfigError: an unknown backend name.
    """
    name = (requested or settings.deploy_backend).lower()
    if name not in BACKENDS:
        raise ConfigError(
            f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}."
        )
    if name != "auto":
        source = "--backend" if requested else "STUDIO_DEPLOY_BACKEND"
        return Choice(name, f"{source}={name}")
    try:
        version = engine_version()
    except BackendUnavailableError as exc:
        return Choice("process", f"no Docker engine: {_reason(exc)}")
    return Choice("docker", f"Docker engine {version} answered")


def describe_choice(settings: Settings, requested: str | None = None) -> str:
    """One sentence naming the backend `get_backend` would use, and why."""
    return str(choose(settings, requested))


def get_backend(
    settings: Settings,
    requested: str | None = None,
    launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT_S,
) -> Backend:
    """The backend STUDIO_DEPLOY_BACKEND (or `requested`) names; auto decides.

    Raises:
        ConfigError: an unknown backend name.
        DeploymentError: `launch_timeout` is below `MIN_LAUNCH_TIMEOUT_S`.
        BackendUnavailableError: docker was asked for and no engine answers
            (raised on first use, with what to do).
    """
    choice = choose(settings, requested)
    logger.info("Deployment backend: %s", choice)
    return _make(settings, choice.name, launch_timeout)


def backend_for(
    settings: Settings, stage: Stage, launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT_S
) -> Backend:
    """The backend that launched the stage's current server, else the default.

    Stopping or reading the logs of a server must go to the backend that
    started it, whatever STUDIO_DEPLOY_BACKEND says now.
    """
    record = read_record(settings, stage)
    if record is not None and record.get("backend") in ("docker", "process"):
        return _make(settings, str(record["backend"]), launch_timeout)
    return get_backend(settings, launch_timeout=launch_timeout)


def _make(settings: Settings, name: str, launch_timeout: float) -> Backend:
    if name == "docker":
        return DockerBackend(settings, launch_timeout)
    return ProcessBackend(settings, launch_timeout)


def _reason(exc: BackendUnavailableError) -> str:
    # "no Docker engine answered at X (why); start Docker, ..." -> "X (why)"
    text = str(exc).removeprefix("no Docker engine answered at ")
    return text.split("; start Docker")[0]
