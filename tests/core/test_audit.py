"""The audit log: events recorded as MLflow runs, listed and filtered."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from core import audit
from core.config import Settings
from core.errors import RegistryError

pytestmark = pytest.mark.integration


def event(
    settings: Settings, kind: str = "promote", **fields: object
) -> audit.AuditEvent:
    values: dict[str, object] = {
        "kind": kind,
        "model_name": settings.model_name,
        "actor": "alice",
        "at": audit.now(),
        "alias": "production",
        "version": "3",
        "from_version": "2",
        "reason": "better recall",
        "outcome": "moved",
        "evidence": {"preconditions": [{"name": "in staging", "ok": True}]},
    }
    values.update(fields)
    return audit.AuditEvent(**values)  # type: ignore[arg-type]


def test_an_event_comes_back_with_who_when_why_and_evidence(settings: Settings) -> None:
    recorded = audit.record(settings, event(settings, override="hotfix"))

    (listed,) = audit.history(settings)

    assert recorded.run_id and listed.run_id == recorded.run_id
    assert listed == recorded
    assert (listed.actor, listed.alias, listed.from_version, listed.version) == (
        "alice",
        "production",
        "2",
        "3",
    )
    assert audit.load_evidence(settings, listed.run_id) == recorded.evidence


def test_history_is_newest_first_and_limited(settings: Settings) -> None:
    start = audit.now()
    for minutes, version in ((0, "1"), (2, "3"), (1, "2")):
        audit.record(
            settings,
            event(settings, version=version, at=start + timedelta(minutes=minutes)),
        )

    assert [e.version for e in audit.history(settings)] == ["3", "2", "1"]
    assert [e.version for e in audit.history(settings, limit=2)] == ["3", "2"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"kinds": ("gate",)}, ["gate v1"]),
        ({"kinds": ("promote", "rollback")}, ["rollback v1", "promote v2"]),
        ({"alias": "staging"}, ["promote v2"]),
        ({"version": "1"}, ["rollback v1", "gate v1"]),
        ({"kinds": ("smoke",)}, []),
    ],
)
def test_history_filters_by_kind_alias_and_version(
    settings: Settings, filters: dict[str, object], expected: list[str]
) -> None:
    start = audit.now()
    audit.record(settings, event(settings, "gate", alias=None, version="1", at=start))
    audit.record(
        settings,
        event(settings, alias="staging", version="2", at=start + timedelta(seconds=1)),
    )
    audit.record(
        settings,
        event(settings, "rollback", version="1", at=start + timedelta(seconds=2)),
    )

    found = audit.history(settings, **filters)  # type: ignore[arg-type]

    assert [f"{e.kind} v{e.version}" for e in found] == expected


def test_history_is_scoped_to_the_model_unless_asked(settings: Settings) -> None:
    other = replace(settings, model_name="other-model")
    audit.record(settings, event(settings))
    audit.record(other, event(other))

    assert [e.model_name for e in audit.history(settings)] == [settings.model_name]
    assert len(audit.history(settings, all_models=True)) == 2


def test_large_evidence_is_complete_in_the_artifact_only(settings: Settings) -> None:
    evidence = {"rows": [{"i": i, "note": "x" * 20} for i in range(400)]}

    recorded = audit.record(settings, event(settings, evidence=evidence))

    (listed,) = audit.history(settings)
    assert listed.evidence == {"truncated": True, "see": "event.json"}
    assert audit.load_evidence(settings, recorded.run_id) == evidence


def test_an_event_without_evidence_has_no_artifact(settings: Settings) -> None:
    recorded = audit.record(settings, event(settings, "policy", evidence={}))

    assert audit.load_evidence(settings, recorded.run_id) == {}


def test_an_empty_store_has_no_history(settings: Settings) -> None:
    assert audit.history(settings) == []


def test_reasons_with_quotes_are_kept_and_filterable(settings: Settings) -> None:
    audit.record(settings, event(settings, reason="it's 'fine'", alias="it's"))

    (found,) = audit.history(settings, alias="it's")

    assert found.reason == "it's 'fine'"


def test_as_dict_is_json_friendly(settings: Settings) -> None:
    recorded = audit.record(settings, event(settings))

    shown = recorded.as_dict()

    assert shown["at"] == recorded.at.isoformat()
    assert shown["from_version"] == "2" and shown["run_id"] == recorded.run_id


def test_an_unreachable_store_is_a_registry_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    remote = replace(settings, tracking_uri=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(
        RegistryError, match=r"^MLflow at http://127\.0\.0\.1:\d+ failed"
    ):
        audit.history(remote)
