"""Promotion of versions candidate → staging → production, and rollback.

Every move checks its preconditions, is a compare-and-set on the alias, and is
recorded twice: as tags on the version it lands on and as an audit event. A
failed precondition can be overridden only with a written reason, which is
recorded with the move.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from core import audit, tags
from core.config import STAGES, Settings, Stage
from core.errors import PreconditionError, StudioError
from core.gates import load_policy
from core.registry import (
    CURRENT,
    VersionInfo,
    alias_version,
    get_version,
    move_alias,
    set_version_tags,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precondition:
    """One rule a move must satisfy, evaluated for a given version."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class MoveResult:
    """What a promotion or rollback did."""

    alias: str
    version: str
    previous: str | None
    event: audit.AuditEvent
    overridden: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "alias": self.alias,
            "version": self.version,
            "previous": self.previous,
            "overridden": list(self.overridden),
            "audit_run_id": self.event.run_id,
            "actor": self.event.actor,
            "at": self.event.at.isoformat(),
            "reason": self.event.reason,
        }


def preconditions(
    settings: Settings, info: VersionInfo, to: Stage
) -> list[Precondition]:
    """The rules for moving `info` onto `to`, each with whether it holds now."""
    if to == "staging":
        return [_gate_passed(settings, info)]
    # The gate again: an override that let a failing version onto staging must
    # not carry it on to production unnoticed, nor a policy saved since.
    return [
        _gate_passed(settings, info),
        _in_staging(settings, info),
        _smoke_passed(info),
    ]


def _gate_passed(settings: Settings, info: VersionInfo) -> Precondition:
    name = "gate passed"
    state = info.gate_state(None)
    if state == "":
        return Precondition(
            name,
            False,
            f"version {info.version} has no gate result; "
            f"run `python -m core gate {info.version}` first",
        )
    if state == "fail":
        summary = info.tags.get(tags.GATE_SUMMARY, "")
        return Precondition(
            name, False, f"the last gate of version {info.version} failed: {summary}"
        )
    current = load_policy(settings).digest
    recorded = info.tags.get(tags.GATE_POLICY_DIGEST, "")
    if info.gate_state(current) == "stale":
        return Precondition(
            name,
            False,
            f"version {info.version} passed policy "
            f"{recorded or '?'}, but the policy in force is {current}; "
            "run the gate again",
        )
    return Precondition(
        name, True, f"passed policy {current} at {info.tags.get(tags.GATE_AT, '?')}"
    )


def _in_staging(settings: Settings, info: VersionInfo) -> Precondition:
    staging = alias_version(settings, "staging")
    ok = staging == info.version
    detail = (
        f"version {info.version} holds staging"
        if ok
        else f"staging holds {'nothing' if staging is None else 'version ' + staging}, "
        f"not version {info.version}; promote it to staging first"
    )
    return Precondition("in staging", ok, detail)


def _smoke_passed(info: VersionInfo) -> Precondition:
    name = "smoke passed"
    if info.smoke_passed is None:
        return Precondition(
            name,
            False,
            f"version {info.version} has no smoke result; "
            "deploy staging and run `python -m core smoke --stage "
            "staging`, or pass --skip-smoke with a reason",
        )
    stage = info.tags.get(tags.SMOKE_STAGE, "?")
    if not info.smoke_passed:
        return Precondition(
            name,
            False,
            f"the last smoke test of version "
            f"{info.version} on {stage} failed: "
            f"{info.tags.get(tags.SMOKE_DETAIL, '')}",
        )
    return Precondition(
        name,
        True,
        f"passed on {stage} at "
        f"{info.tags.get(tags.SMOKE_AT, '?')} (p95 "
        f"{info.tags.get(tags.SMOKE_P95_MS, '?')} ms)",
    )


def promote(
    settings: Settings,
    version: str,
    to: Stage,
    *,
    expected: Any = CURRENT,
    reason: str = "",
    override_reason: str = "",
    skip_smoke_reason: str = "",
) -> MoveResult:
    """Move alias `to` onto `version` once its preconditions hold.

    Args:
        version: the version to promote.
        to: `staging` or `production`.
        expected: the version the caller believes holds `to` now (None: unset);
            the move fails if it changed. `CURRENT` accepts whatever is there.
        reason: why, recorded with the move.
        override_reason: bypasses every failed precondition; recorded.
        skip_smoke_reason: bypasses only the smoke precondition; recorded.

    Raises:
        PreconditionError: a precondition fails and no override covers it.
        ConcurrentMoveError: the alias moved since the caller looked.
        VersionNotFoundError: no such version.
    """
    if to not in STAGES:
        raise StudioError(f"unknown stage {to!r}; use staging or production.")
    info = get_version(settings, version)
    checks = preconditions(settings, info, to)
    failed = [c for c in checks if not c.ok]
    overridden: list[str] = []
    if skip_smoke_reason.strip():
        overridden += [c.name for c in failed if c.name == "smoke passed"]
    if override_reason.strip():
        overridden += [c.name for c in failed if c.name not in overridden]
    blocking = [c for c in failed if c.name not in overridden]
    if blocking:
        raise PreconditionError(
            f"cannot promote version {version} to {to}: "
            + "; ".join(c.detail for c in blocking)
            + ". Fix that, or give an override reason.",
            missing=[c.name for c in blocking],
        )
    override_text = " | ".join(
        t.strip() for t in (skip_smoke_reason, override_reason) if t.strip()
    )
    return _move(
        settings,
        info,
        to,
        expected,
        "promote",
        reason,
        override_text,
        overridden,
        checks,
    )


def previous_version(settings: Settings, alias: str = "production") -> str | None:
    """The version that held `alias` before its current holder was promoted.

    Follows promotions only (not rollbacks), so rolling back twice walks further
    back in history instead of flipping between two versions.
    """
    current = alias_version(settings, alias)
    if current is None:
        return None
    events = audit.history(
        settings, kinds=("promote",), alias=alias, version=current, limit=20
    )
    for event in events:
        # Promoting the version that already holds the alias records a move from
        # itself; rolling back to it would change nothing.
        if event.from_version != current:
            return event.from_version
    info = get_version(settings, current, with_run=False)
    previous = info.tags.get(tags.moved(alias, "from")) or None
    return None if previous == current else previous


def rollback(
    settings: Settings,
    alias: str = "production",
    *,
    expected: Any = CURRENT,
    reason: str = "",
) -> MoveResult:
    """Put `alias` back on the version that held it before the current one.

    Raises:
        PreconditionError: there is no earlier version to return to, or no reason.
        ConcurrentMoveError: the alias moved since the caller looked.
    """
    if not reason.strip():
        raise PreconditionError(
            "a rollback needs a reason; say what went wrong.", missing=["reason"]
        )
    current = alias_version(settings, alias)
    if current is None:
        raise PreconditionError(
            f"{alias} is not set; there is nothing to roll back.", missing=["alias set"]
        )
    target = previous_version(settings, alias)
    if target is None:
        raise PreconditionError(
            f"{alias} version {current} has no recorded predecessor; promote the "
            "version you want instead.",
            missing=["previous version"],
        )
    info = get_version(settings, target)
    if expected is CURRENT:
        expected = current
    return _move(settings, info, alias, expected, "rollback", reason, "", [], [])


def _move(
    settings: Settings,
    info: VersionInfo,
    alias: str,
    expected: Any,
    kind: str,
    reason: str,
    override: str,
    overridden: list[str],
    checks: list[Precondition],
) -> MoveResult:
    at = audit.now()
    previous = move_alias(settings, alias, info.version, expected)
    reached = info.tags.get(tags.STATUS, "candidate")
    if tags.STATUS_ORDER.index(alias) > _rank(reached):
        reached = alias
    set_version_tags(
        settings,
        info.version,
        {
            tags.STATUS: reached,
            tags.moved(alias, "by"): settings.actor,
            tags.moved(alias, "at"): at.isoformat(),
            tags.moved(alias, "reason"): reason or "-",
            tags.moved(alias, "from"): previous or "",
            tags.moved(alias, "override"): override or "-",
            tags.moved(alias, "event"): kind,
        },
    )
    evidence = {
        "preconditions": [c.as_dict() for c in checks],
        "overridden": overridden,
        "gate": {
            k: info.tags.get(k)
            for k in (
                tags.GATE_PASSED,
                tags.GATE_POLICY_DIGEST,
                tags.GATE_AT,
                tags.GATE_SUMMARY,
            )
        },
        "smoke": {
            k: info.tags.get(k)
            for k in (
                tags.SMOKE_PASSED,
                tags.SMOKE_STAGE,
                tags.SMOKE_AT,
                tags.SMOKE_P50_MS,
                tags.SMOKE_P95_MS,
            )
        },
        "metrics": dict(info.metrics),
        "run_id": info.run_id,
    }
    event = audit.record(
        settings,
        audit.AuditEvent(
            kind=kind,
            model_name=info.model_name,
            actor=settings.actor,
            at=at,
            alias=alias,
            version=info.version,
            from_version=previous,
            reason=reason,
            override=override,
            # Re-promoting the holder (to redeploy it) is recorded, as no move.
            outcome="moved" if previous != info.version else "kept",
            evidence=evidence,
        ),
    )
    logger.info(
        "%s: %s of %s now version %s (was %s) by %s%s",
        kind.capitalize(),
        alias,
        info.model_name,
        info.version,
        previous or "unset",
        settings.actor,
        f"; overridden: {', '.join(overridden)}" if overridden else "",
    )
    return MoveResult(
        alias=alias,
        version=info.version,
        previous=previous,
        event=event,
        overridden=tuple(overridden),
    )


def _rank(status: str) -> int:
    return tags.STATUS_ORDER.index(status) if status in tags.STATUS_ORDER else 0
