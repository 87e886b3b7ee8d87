"""Releases: move an alias, put the stage's server on it, and prove it serves.

The app's Promote page and the CLI call these so that a release is the same
sequence everywhere: promote (or roll back) → launch or restart the stage's
server → wait for health → probe (the served version must be the alias's) →
smoke (recorded on the version). Each deployment is also an audit event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core import audit, promotion
from core.config import STAGES, Settings, Stage
from core.deployment import Backend, Progress, ServerStatus, backend_for, get_backend
from core.deployment.base import DEFAULT_LAUNCH_TIMEOUT_S, announce, read_record
from core.errors import DeploymentError, StudioError
from core.probes import ProbeResult, SmokeResult, probe, smoke
from core.registry import CURRENT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeployResult:
    """A launched server and the first probe of it."""

    status: ServerStatus
    probe: ProbeResult
    backend: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "backend": self.backend,
            "status": self.status.as_dict(),
            "probe": self.probe.as_dict(),
        }


@dataclass(frozen=True)
class ReleaseResult:
    """What a release or rollback did, step by step."""

    move: promotion.MoveResult
    status: ServerStatus
    probe: ProbeResult
    smoke: SmokeResult | None

    @property
    def passed(self) -> bool:
        """True when the server serves the alias's version and smoke passed."""
        return self.probe.is_healthy and (self.smoke is None or self.smoke.passed)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "move": self.move.as_dict(),
            "status": self.status.as_dict(),
            "probe": self.probe.as_dict(),
            "smoke": self.smoke.as_dict() if self.smoke else None,
            "passed": self.passed,
        }


def deploy(
    settings: Settings,
    stage: Stage,
    *,
    backend: str | None = None,
    progress: Progress | None = None,
    launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT_S,
) -> DeployResult:
    """Launch (or replace) the stage's server, probe it and record the deployment.

    A server of the same stage left by the other backend is stopped first, so
    switching between Docker and processes never fights over the port.

    Raises:
        DeploymentError: the launch failed, or the server serves another
            version than the alias names.
    """
    if stage not in STAGES:
        raise StudioError(f"unknown stage {stage!r}; use staging or production.")
    say = announce(progress)
    chosen = get_backend(settings, backend, launch_timeout)
    _stop_other_backend(settings, stage, chosen, say)
    status = chosen.launch(stage, say)
    checked = probe(settings, stage)
    audit.record(
        settings,
        audit.AuditEvent(
            kind="deploy",
            model_name=settings.model_name,
            actor=settings.actor,
            at=audit.now(),
            alias=stage,
            version=checked.served_version,
            outcome="running" if checked.is_healthy else "unhealthy",
            evidence={
                "backend": chosen.name,
                "status": status.as_dict(),
                "probe": checked.as_dict(),
            },
        ),
    )
    if not checked.is_healthy:
        raise DeploymentError(
            f"the {stage} server started but is not serving what {stage} names: "
            f"{checked.message}"
        )
    return DeployResult(status=status, probe=checked, backend=chosen.name)


def release(
    settings: Settings,
    version: str,
    stage: Stage,
    *,
    expected: Any = CURRENT,
    reason: str = "",
    override_reason: str = "",
    skip_smoke_reason: str = "",
    progress: Progress | None = None,
    backend: str | None = None,
) -> ReleaseResult:
    """Promote `version` to `stage`, serve it there and smoke-test it.

    Raises:
        PreconditionError: the promotion was refused (nothing changed).
        ConcurrentMoveError: the alias moved since the caller looked.
        DeploymentError: the alias moved but its server did not come up; the
            message says how to retry or roll back.
    """
    say = announce(progress)
    say(f"Promoting version {version} to {stage}")
    move = promotion.promote(
        settings,
        version,
        stage,
        expected=expected,
        reason=reason,
        override_reason=override_reason,
        skip_smoke_reason=skip_smoke_reason,
    )
    return _serve_move(settings, move, stage, say, backend)


def rollback_release(
    settings: Settings,
    stage: Stage = "production",
    *,
    expected: Any = CURRENT,
    reason: str,
    progress: Progress | None = None,
    backend: str | None = None,
) -> ReleaseResult:
    """Return `stage` to its previous version, serve it and smoke-test it.

    Raises:
        PreconditionError: no reason, or no earlier version to return to.
        ConcurrentMoveError: the alias moved since the caller looked.
        DeploymentError: the alias moved back but its server did not come up.
    """
    say = announce(progress)
    say(f"Rolling {stage} back to its previous version")
    move = promotion.rollback(settings, stage, expected=expected, reason=reason)
    return _serve_move(settings, move, stage, say, backend)


def _serve_move(
    settings: Settings,
    move: promotion.MoveResult,
    stage: Stage,
    say: Progress,
    backend: str | None,
) -> ReleaseResult:
    try:
        deployed = deploy(settings, stage, backend=backend, progress=say)
    except DeploymentError as exc:
        raise DeploymentError(
            f"{stage} now points to version {move.version} (was "
            f"{move.previous or 'unset'}), but its server is not serving it: {exc} "
            f"Fix the cause and run python -m core deploy --stage {stage}, or roll "
            f"back with python -m core rollback --alias {stage} --reason ..."
        ) from exc
    say(f"Smoke-testing {stage} version {move.version}")
    result = smoke(settings, stage)
    say(f"Smoke test {'passed' if result.passed else 'FAILED'}: {result.detail}")
    return ReleaseResult(
        move=move, status=deployed.status, probe=deployed.probe, smoke=result
    )


def _stop_other_backend(
    settings: Settings, stage: Stage, chosen: Backend, say: Progress
) -> None:
    record = read_record(settings, stage)
    if record is None or record.get("backend") in (None, chosen.name):
        return
    previous = backend_for(settings, stage)
    if previous.status(stage).is_up:
        say(f"Stopping the {stage} server run by the {previous.name} backend")
        previous.stop(stage)
