"""Releases: move an alias, put the stage's server on it, and prove it serves.

The app's Promote page and the CLI call these so that a release is the same
sequence everywhere: promote (or roll back) → launch or restart the stage's
server → wait for health → probe (the served version must be the alias's) →
smoke (recorded on the version). Each deployment, failed or not, is also an
audit event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core import audit, promotion
from core.config import STAGES, Settings, Stage
from core.deployment import Backend, Progress, ServerStatus, backend_for, get_backend
from core.deployment.base import (
    DEFAULT_LAUNCH_TIMEOUT_S,
    announce,
    read_record,
    require_launch_timeout,
)
from core.errors import DeploymentError, StudioError
from core.probes import ProbeResult, SmokeResult, probe, smoke
from core.registry import CURRENT, alias_version

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

    The chosen backend first checks everything its launch needs; only then is
    a server of the same stage left by the other backend stopped, so switching
    between Docker and processes never fights over the port, and a launch that
    cannot start leaves the old server serving. A deploy that fails once the
    backend is chosen is recorded as a "failed" deploy event, then raised;
    refused arguments (stage, backend name, timeout) are not events.

    Raises:
        DeploymentError: the launch timeout is too short, the launch failed,
            or the server serves another version than the alias names.
    """
    if stage not in STAGES:
        raise StudioError(f"unknown stage {stage!r}; use staging or production.")
    require_launch_timeout(launch_timeout)
    say = announce(progress)
    chosen = get_backend(settings, backend, launch_timeout)
    try:
        chosen.prepare(stage, say)
        _stop_other_backend(settings, stage, chosen, say)
        status = chosen.launch(stage, say)
        checked = probe(settings, stage)
    except StudioError as exc:
        _record_failure(settings, stage, chosen.name, exc)
        raise
    _record_deploy(
        settings,
        stage,
        checked.served_version,
        "running" if checked.is_healthy else "unhealthy",
        {
            "backend": chosen.name,
            "status": status.as_dict(),
            "probe": checked.as_dict(),
        },
    )
    if not checked.is_healthy:
        raise DeploymentError(
            f"the {stage} server started but is not serving what {stage} names: "
            f"{checked.message}"
        )
    return DeployResult(status=status, probe=checked, backend=chosen.name)


def stop(settings: Settings, stage: Stage) -> ServerStatus:
    """Stop the stage's server, whichever backend runs it, and record that.

    A stage with nothing serving is as much a fact of the audit trail as a
    deployment: who took production down, and when.
    """
    if stage not in STAGES:
        raise StudioError(f"unknown stage {stage!r}; use staging or production.")
    backend = backend_for(settings, stage)
    was = backend.status(stage)
    # Ask what it served before it goes, for the record.
    served = probe(settings, stage).served_version if was.is_up else None
    status = backend.stop(stage)
    if was.is_up:
        _record_deploy(
            settings,
            stage,
            served,
            "stopped",
            {"backend": backend.name, "status": status.as_dict()},
        )
    return status


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


def _record_deploy(
    settings: Settings,
    stage: Stage,
    version: str | None,
    outcome: str,
    evidence: dict[str, Any],
) -> None:
    audit.record(
        settings,
        audit.AuditEvent(
            kind="deploy",
            model_name=settings.model_name,
            actor=settings.actor,
            at=audit.now(),
            alias=stage,
            version=version,
            outcome=outcome,
            evidence=evidence,
        ),
    )


def _record_failure(
    settings: Settings, stage: Stage, backend: str, exc: StudioError
) -> None:
    try:
        _record_deploy(
            settings,
            stage,
            alias_version(settings, stage),
            "failed",
            {"backend": backend, "error": str(exc)},
        )
    except StudioError as unrecorded:
        # The deploy's own error is the one to show; a store that cannot take
        # the event is often the very reason the deploy failed.
        logger.warning(
            "Could not record the failed %s deploy in the audit log: %s",
            stage,
            unrecorded,
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
