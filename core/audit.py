"""The append-only audit log of alias moves, gate decisions and policy changes.

Each event is one MLflow run in a dedicated audit experiment: its tags hold the
who/when/what, its `event.json` artifact the evidence. Kept through MLflow
itself, the log works the same on an embedded store and a remote tracking
server, and concurrent writers never overwrite each other (every event is a new
run; nothing is edited afterwards).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException

from core import tags
from core.config import Settings
from core.tracking import client_for, ensure_experiment, search_literal, unreachable

logger = logging.getLogger(__name__)

EVIDENCE_ARTIFACT = "event.json"
EVIDENCE_TAG = "studio.evidence"
# MLflow caps tag values (8000 characters on SQL stores); the full evidence is in
# the artifact, the tag keeps enough for listing pages without downloads.
EVIDENCE_TAG_LIMIT = 4000
EVENT_KINDS = tags.EVENT_KINDS


@dataclass(frozen=True)
class AuditEvent:
    """One recorded decision.

    Attributes:
        kind: one of `EVENT_KINDS`.
        model_name: the registered model it concerns.
        actor: who did it (user name, CI job, or the app's signed-in user).
        at: when, in UTC.
        alias: the alias moved or served (`staging`/`production`), if any.
        version: the version judged (gate, smoke) or moved to.
        from_version: for alias moves, the version that held the alias before.
        reason: why, in the actor's words.
        override: the written reason a failed precondition was bypassed, if any.
        outcome: `passed`/`failed` for gates and smoke, `moved` for moves.
        evidence: the data behind the decision (check results, latencies...).
        run_id: the audit run holding the event, once recorded.
    """

    kind: str
    model_name: str
    actor: str
    at: datetime
    alias: str | None = None
    version: str | None = None
    from_version: str | None = None
    reason: str = ""
    override: str = ""
    outcome: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (CLI `--json`, CSV export)."""
        return {
            "kind": self.kind,
            "model_name": self.model_name,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "alias": self.alias,
            "version": self.version,
            "from_version": self.from_version,
            "reason": self.reason,
            "override": self.override,
            "outcome": self.outcome,
            "evidence": self.evidence,
            "run_id": self.run_id,
        }


def now() -> datetime:
    """The current UTC time, truncated to milliseconds (MLflow's resolution)."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def record(settings: Settings, event: AuditEvent) -> AuditEvent:
    """Append `event` to the audit log and return it with its run id.

    Raises:
        RegistryError: the tracking store could not be written.
    """
    experiment_id = ensure_experiment(settings, settings.audit_experiment_name)
    client = client_for(settings)
    event_tags = {
        tags.EVENT: event.kind,
        tags.EVENT_MODEL: event.model_name,
        tags.EVENT_ACTOR: event.actor,
        tags.EVENT_AT: event.at.isoformat(),
        tags.EVENT_ALIAS: event.alias or "",
        tags.EVENT_VERSION: event.version or "",
        tags.EVENT_FROM: event.from_version or "",
        tags.EVENT_REASON: event.reason[:5000],
        tags.EVENT_OVERRIDE: event.override[:5000],
        tags.EVENT_OUTCOME: event.outcome,
        EVIDENCE_TAG: _truncated_json(event.evidence),
        "mlflow.runName": _run_name(event),
    }
    start_ms = int(event.at.timestamp() * 1000)
    try:
        run = client.create_run(experiment_id, start_time=start_ms, tags=event_tags)
        if event.evidence:
            client.log_dict(run.info.run_id, event.evidence, EVIDENCE_ARTIFACT)
        client.set_terminated(
            run.info.run_id, RunStatus.to_string(RunStatus.FINISHED), end_time=start_ms
        )
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc
    logger.debug(
        "Recorded %s event for %s as run %s",
        event.kind,
        event.model_name,
        run.info.run_id,
    )
    return replace(event, run_id=run.info.run_id)


def history(
    settings: Settings,
    *,
    kinds: tuple[str, ...] = (),
    alias: str | None = None,
    version: str | None = None,
    limit: int = 100,
    all_models: bool = False,
) -> list[AuditEvent]:
    """Recorded events, newest first, filtered by kind, alias or version.

    Evidence comes from the listing tag (possibly truncated); use
    `load_evidence` for the full artifact.
    """
    client = client_for(settings)
    try:
        experiment = client.get_experiment_by_name(settings.audit_experiment_name)
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc
    if experiment is None:
        return []
    clauses = []
    if not all_models:
        clauses.append(
            f"tags.`{tags.EVENT_MODEL}` = {search_literal(settings.model_name)}"
        )
    if alias:
        clauses.append(f"tags.`{tags.EVENT_ALIAS}` = {search_literal(alias)}")
    if version:
        clauses.append(f"tags.`{tags.EVENT_VERSION}` = {search_literal(version)}")
    # MLflow's search grammar has no IN for tags, so each kind is one query.
    kind_clauses = [f"tags.`{tags.EVENT}` = {search_literal(k)}" for k in kinds] or [""]
    runs: list[Any] = []
    try:
        for kind_clause in kind_clauses:
            runs += client.search_runs(
                [experiment.experiment_id],
                " AND ".join(c for c in (*clauses, kind_clause) if c),
                max_results=limit,
                order_by=["attributes.start_time DESC"],
            )
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc
    events = [_event_from_run(run) for run in runs]
    return sorted(events, key=lambda e: e.at, reverse=True)[:limit]


def load_evidence(settings: Settings, run_id: str) -> dict[str, Any]:
    """The full evidence artifact of one recorded event ({} when it had none)."""
    client = client_for(settings)
    try:
        artifacts = [a.path for a in client.list_artifacts(run_id)]
        if EVIDENCE_ARTIFACT not in artifacts:
            return {}
        path = client.download_artifacts(run_id, EVIDENCE_ARTIFACT)
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc
    with open(path, encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def _event_from_run(run: Any) -> AuditEvent:
    values: dict[str, str] = run.data.tags
    try:
        evidence = json.loads(values.get(EVIDENCE_TAG) or "{}")
    except json.JSONDecodeError:
        evidence = {"truncated": True}
    at_text = values.get(tags.EVENT_AT)
    at = (
        datetime.fromisoformat(at_text)
        if at_text
        else datetime.fromtimestamp(run.info.start_time / 1000, UTC)
    )
    return AuditEvent(
        kind=values.get(tags.EVENT, ""),
        model_name=values.get(tags.EVENT_MODEL, ""),
        actor=values.get(tags.EVENT_ACTOR, ""),
        at=at,
        alias=values.get(tags.EVENT_ALIAS) or None,
        version=values.get(tags.EVENT_VERSION) or None,
        from_version=values.get(tags.EVENT_FROM) or None,
        reason=values.get(tags.EVENT_REASON, ""),
        override=values.get(tags.EVENT_OVERRIDE, ""),
        outcome=values.get(tags.EVENT_OUTCOME, ""),
        evidence=evidence,
        run_id=run.info.run_id,
    )


def _truncated_json(evidence: dict[str, Any]) -> str:
    text = json.dumps(evidence, default=str, sort_keys=True)
    if len(text) <= EVIDENCE_TAG_LIMIT:
        return text
    return json.dumps({"truncated": True, "see": EVIDENCE_ARTIFACT})


def _run_name(event: AuditEvent) -> str:
    target = f" {event.alias}" if event.alias else ""
    version = f" v{event.version}" if event.version else ""
    return f"{event.kind}{target}{version}"
