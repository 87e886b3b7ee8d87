"""Promotion and rollback: preconditions, overrides, the audit trail, conflicts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core import audit, gates, promotion, registry, tags
from core.config import Settings, load_settings, with_actor
from core.errors import ConcurrentMoveError, PreconditionError, StudioError
from tests.conftest import PolicyWriter, Trained, register_runs

pytestmark = pytest.mark.integration

SMOKE_PASSED = {
    tags.SMOKE_PASSED: "true",
    tags.SMOKE_STAGE: "staging",
    tags.SMOKE_AT: "2026-01-01T00:00:00+00:00",
    tags.SMOKE_P95_MS: "12.5",
}


def gated(settings: Settings, *versions: str) -> None:
    for version in versions:
        gates.evaluate_gate(settings, version)


def staged(settings: Settings, version: str) -> None:
    """Gate `version`, put it on staging and record a passing smoke test."""
    gated(settings, version)
    promotion.promote(settings, version, "staging", reason="candidate")
    registry.set_version_tags(settings, version, SMOKE_PASSED)


def released(settings: Settings, *versions: str) -> None:
    """Take each version through staging to production, in order."""
    for version in versions:
        staged(settings, version)
        promotion.promote(settings, version, "production", reason=f"release {version}")


def test_staging_refuses_a_version_without_a_gate_result(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    with pytest.raises(PreconditionError) as raised:
        promotion.promote(model_settings, "1", "staging")

    assert str(raised.value) == (
        "cannot promote version 1 to staging: version 1 has no gate result; run "
        "`python -m core gate 1` first. Fix that, or give an override reason."
    )
    assert raised.value.missing == ["gate passed"]
    assert registry.aliases(model_settings) == {}


def test_staging_refuses_a_version_whose_gate_failed(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    gated(model_settings, "2")

    with pytest.raises(
        PreconditionError, match="the last gate of version 2 failed: FAIL"
    ):
        promotion.promote(model_settings, "2", "staging")

    assert registry.alias_version(model_settings, "staging") is None


def test_staging_refuses_a_gate_passed_under_another_policy(
    model_settings: Settings, registered_versions: list[str], write_policy: PolicyWriter
) -> None:
    gated(model_settings, "1")
    old = gates.load_policy(model_settings).digest
    stricter = write_policy(
        [
            {
                "name": "accuracy",
                "kind": "metric",
                "metric": "accuracy",
                "threshold": 0.95,
            }
        ],
        name="stricter.toml",
    )
    now_stricter = replace(model_settings, policy_path=stricter)
    new = gates.load_policy(now_stricter).digest

    with pytest.raises(PreconditionError) as raised:
        promotion.promote(now_stricter, "1", "staging")

    assert f"version 1 passed policy {old}, but the policy in force is {new}; " in str(
        raised.value
    )


def test_a_passing_gate_lets_a_version_into_staging(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    gated(model_settings, "1")

    moved = promotion.promote(model_settings, "1", "staging", reason="looks good")

    assert (moved.alias, moved.version, moved.previous) == ("staging", "1", None)
    version = registry.get_version(model_settings, "1")
    assert version.aliases == ("staging",)
    assert version.tags[tags.moved("staging", "by")] == "tester"
    assert version.tags[tags.moved("staging", "reason")] == "looks good"


def test_an_override_reason_admits_a_failed_gate_and_is_recorded(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    gated(model_settings, "2")

    moved = promotion.promote(
        model_settings, "2", "staging", override_reason="demo for the client"
    )

    assert moved.overridden == ("gate passed",)
    (event,) = audit.history(model_settings, kinds=("promote",))
    assert event.override == "demo for the client"
    assert event.evidence["overridden"] == ["gate passed"]


def test_a_gate_overridden_for_staging_blocks_production_again(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    promotion.promote(model_settings, "2", "staging", override_reason="demo")

    with pytest.raises(PreconditionError) as raised:
        promotion.promote(
            model_settings, "2", "production", skip_smoke_reason="smoked by hand"
        )

    assert raised.value.missing == ["gate passed"]
    assert registry.alias_version(model_settings, "production") is None


def test_production_needs_staging_and_a_smoke_result(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    gated(model_settings, "1")

    with pytest.raises(PreconditionError) as raised:
        promotion.promote(model_settings, "1", "production")

    assert raised.value.missing == ["in staging", "smoke passed"]
    assert str(raised.value) == (
        "cannot promote version 1 to production: staging holds nothing, not "
        "version 1; promote it to staging first; version 1 has no smoke result; "
        "deploy staging and run `python -m core smoke --stage staging`, or pass "
        "--skip-smoke with a reason. Fix that, or give an override reason."
    )


def test_skip_smoke_covers_only_the_smoke_precondition(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    gated(model_settings, "1", "3")
    promotion.promote(model_settings, "1", "staging")

    with pytest.raises(PreconditionError) as raised:
        promotion.promote(
            model_settings, "3", "production", skip_smoke_reason="no server"
        )
    assert raised.value.missing == ["in staging"]

    moved = promotion.promote(
        model_settings, "1", "production", skip_smoke_reason="no server yet"
    )
    assert moved.overridden == ("smoke passed",)
    assert registry.alias_version(model_settings, "production") == "1"


def test_a_failed_smoke_test_blocks_production(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    staged(model_settings, "1")
    registry.set_version_tags(
        model_settings, "1", {tags.SMOKE_PASSED: "false", tags.SMOKE_DETAIL: "HTTP 500"}
    )

    with pytest.raises(PreconditionError) as raised:
        promotion.promote(model_settings, "1", "production")

    assert raised.value.missing == ["smoke passed"]
    assert "the last smoke test of version 1 on staging failed: HTTP 500" in str(
        raised.value
    )


def test_a_staged_and_smoked_version_reaches_production(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    staged(model_settings, "1")

    moved = promotion.promote(model_settings, "1", "production", reason="release")

    assert moved.overridden == ()
    checks = promotion.preconditions(
        model_settings, registry.get_version(model_settings, "1"), "production"
    )
    assert [(c.name, c.ok) for c in checks] == [
        ("gate passed", True),
        ("in staging", True),
        ("smoke passed", True),
    ]
    assert checks[2].detail.endswith("(p95 12.5 ms)")
    assert registry.get_version(model_settings, "1").tags[tags.STATUS] == "production"


def test_promoting_the_holder_again_is_recorded_as_kept(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    gated(model_settings, "1")
    promotion.promote(model_settings, "1", "staging", reason="first")

    again = promotion.promote(model_settings, "1", "staging", reason="redeploy")

    assert (again.previous, again.event.outcome) == ("1", "kept")
    assert registry.get_version(model_settings, "1").tags[tags.STATUS] == "staging"


def test_a_move_is_audited_with_actor_time_reason_and_evidence(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    released(model_settings, "1")
    staged(model_settings, "3")
    before = audit.now()

    moved = promotion.promote(
        with_actor(model_settings, "alice"), "3", "production", reason="better f1"
    )

    (event,) = audit.history(model_settings, kinds=("promote",), limit=1)
    assert event == moved.event
    assert (event.actor, event.alias, event.from_version, event.version) == (
        "alice",
        "production",
        "1",
        "3",
    )
    assert event.reason == "better f1" and event.at >= before
    evidence = audit.load_evidence(model_settings, event.run_id)
    assert [p["name"] for p in evidence["preconditions"]] == [
        "gate passed",
        "in staging",
        "smoke passed",
    ]
    assert evidence["gate"][tags.GATE_PASSED] == "true"
    assert evidence["metrics"]["accuracy"] > 0.9


def test_rolling_back_twice_walks_back_through_releases(
    model_settings: Settings, registered_versions: list[str], trained: Trained
) -> None:
    register_runs(model_settings, trained, ("1",))  # version 4: a fourth good one
    released(model_settings, "1", "3", "4")

    first = promotion.rollback(model_settings, reason="v4 errors")
    second = promotion.rollback(model_settings, reason="v3 errors too")

    assert (first.previous, first.version) == ("4", "3")
    assert (second.previous, second.version) == ("3", "1")
    assert registry.alias_version(model_settings, "production") == "1"
    kinds = [e.kind for e in audit.history(model_settings, alias="production")]
    assert kinds == ["rollback", "rollback", "promote", "promote", "promote"]


def test_rolling_back_past_the_first_release_is_refused(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    released(model_settings, "1")

    with pytest.raises(PreconditionError) as raised:
        promotion.rollback(model_settings, reason="bad")

    assert str(raised.value) == (
        "production version 1 has no recorded predecessor; promote the version "
        "you want instead."
    )


def test_promoting_the_holder_again_does_not_break_rollback(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    released(model_settings, "1", "3")
    promotion.promote(model_settings, "3", "production", reason="clicked twice")

    moved = promotion.rollback(model_settings, reason="v3 bad")

    assert moved.version == "1"


@pytest.mark.parametrize(
    ("alias", "reason", "message"),
    [
        ("production", "  ", "a rollback needs a reason; say what went wrong."),
        ("staging", "bad", "staging is not set; there is nothing to roll back."),
    ],
)
def test_rollback_is_refused_without_reason_or_alias(
    model_settings: Settings,
    registered_versions: list[str],
    alias: str,
    reason: str,
    message: str,
) -> None:
    with pytest.raises(PreconditionError) as raised:
        promotion.rollback(model_settings, alias, reason=reason)

    assert str(raised.value) == message


def test_a_stale_expectation_refuses_the_promotion(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    gated(model_settings, "1", "3")
    promotion.promote(model_settings, "1", "staging")

    with pytest.raises(ConcurrentMoveError):
        promotion.promote(model_settings, "3", "staging", expected=None)

    assert registry.alias_version(model_settings, "staging") == "1"
    assert len(audit.history(model_settings, kinds=("promote",))) == 1


def test_a_rollback_with_a_stale_expectation_is_refused(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    released(model_settings, "1", "3")

    with pytest.raises(ConcurrentMoveError):
        promotion.rollback(model_settings, expected="1", reason="bad")

    assert registry.alias_version(model_settings, "production") == "3"


def test_an_unknown_stage_is_refused(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    with pytest.raises(
        StudioError, match=r"unknown stage 'qa'; use staging or production\."
    ):
        promotion.promote(model_settings, "1", "qa")  # type: ignore[arg-type]


def test_train_gate_promote_rollback_history_on_a_real_mlflow_server(
    server_env: dict[str, str],
) -> None:
    """The whole path against a remote store: REST calls, proxied artifacts."""
    from core.training import TrainRequest, train

    remote = load_settings(server_env)
    assert not remote.is_embedded
    for params in ({}, {"C": 0.5}):
        train(remote, TrainRequest("breast_cancer", params=params))

    released(remote, "1", "2")
    rolled = promotion.rollback(remote, reason="v2 misbehaves")

    assert (rolled.previous, rolled.version) == ("2", "1")
    assert registry.aliases(remote) == {"staging": "2", "production": "1"}
    assert registry.get_version(remote, "2").gate_passed is True
    events = audit.history(remote)
    assert [(e.kind, e.alias, e.version) for e in events[:3]] == [
        ("rollback", "production", "1"),
        ("promote", "production", "2"),
        ("promote", "staging", "2"),
    ]
    assert audit.load_evidence(remote, events[0].run_id)["run_id"]
