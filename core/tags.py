"""Names of the MLflow tags Promotion Studio reads and writes, kept in one place.

Runs, model versions and audit events carry these keys; other tools reading the
same tracking server can rely on them.
"""

from __future__ import annotations

PREFIX = "studio."

# Training runs (and copied onto the model versions they register).
RUN_DATASET = "studio.dataset"
RUN_DATASET_SOURCE = "studio.dataset_source"
RUN_TARGET = "studio.target"
RUN_ESTIMATOR = "studio.estimator"
RUN_FEATURES = "studio.features"
RUN_CLASSES = "studio.classes"
RUN_ACTOR = "studio.actor"
GOLDEN_DIGEST = "studio.golden_digest"

# Model versions.
# The furthest stage a version has reached: candidate, staging, then production.
STATUS = "studio.status"
STATUS_ORDER = ("candidate", "staging", "production")
GATE_PASSED = "studio.gate.passed"
GATE_POLICY_DIGEST = "studio.gate.policy_digest"
GATE_AT = "studio.gate.at"
GATE_BY = "studio.gate.by"
GATE_SUMMARY = "studio.gate.summary"
GATE_ARTIFACT = "studio.gate.artifact"
SMOKE_PASSED = "studio.smoke.passed"
SMOKE_STAGE = "studio.smoke.stage"
SMOKE_AT = "studio.smoke.at"
SMOKE_P50_MS = "studio.smoke.p50_ms"
SMOKE_P95_MS = "studio.smoke.p95_ms"
SMOKE_DETAIL = "studio.smoke.detail"


def moved(alias: str, field: str) -> str:
    """Tag key recording the last move of `alias` onto a version (by/at/reason...)."""
    return f"studio.{alias}.{field}"


# Audit events (runs of the audit experiment).
EVENT = "studio.event"
EVENT_MODEL = "studio.model"
EVENT_ALIAS = "studio.alias"
EVENT_VERSION = "studio.version"
EVENT_FROM = "studio.from_version"
EVENT_TO = "studio.to_version"
EVENT_ACTOR = "studio.actor"
EVENT_REASON = "studio.reason"
EVENT_OVERRIDE = "studio.override"
EVENT_AT = "studio.at"
EVENT_OUTCOME = "studio.outcome"


def is_true(value: str | None) -> bool:
    """Read a boolean tag written by us ("true"/"false")."""
    return (value or "").lower() == "true"


# Values of the EVENT tag: what kinds of decision the audit log records.
EVENT_KINDS = ("promote", "rollback", "gate", "smoke", "policy", "deploy")
