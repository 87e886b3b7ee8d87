"""The Promote page: the pipeline row, next-step buttons, CAS and rollback."""

from __future__ import annotations

import threading

import pytest

from core import audit, gates, promotion, registry, rollout
from core.config import Settings
from tests.pages.conftest import finish_tasks, open_page

pytestmark = pytest.mark.integration

REASON_LABEL = "Reason for the move (recorded in the audit log)"
STRICT = {"accuracy": 0.999, "f1": 0.999}


def pick(at, version: str):  # type: ignore[no-untyped-def]
    return at.selectbox(key="promote.version").set_value(version).run()


def reason(at):  # type: ignore[no-untyped-def]
    """The reason field of the chosen version."""
    return next(t for t in at.text_input if t.label == REASON_LABEL)


def fail_the_gate(s: Settings, version: str) -> None:
    """Gate `version` under a policy nothing passes."""
    strict = gates.load_policy(s).with_thresholds(STRICT)
    gates.save_policy(s, strict, "a bar nothing clears")
    gates.evaluate_gate(s, version)


def test_pipeline_shows_five_steps_and_what_blocks_them(seeded: Settings) -> None:
    at = open_page("promote")

    titles = [
        m.value
        for m in at.markdown
        if m.value.startswith("**") and m.value[-2:] == "**"
    ]
    assert titles[-5:] == [
        "**Candidate**",
        "**Gate**",
        "**Staging**",
        "**Smoke**",
        "**Production**",
    ]
    assert at.button(key="promote.to.staging").disabled
    needs = next(c.value for c in at.caption if "**Needs**" in c.value)
    assert "gate passed: version 2 has no gate result → run the gate" in needs
    assert "python -m core" not in needs


def test_gate_button_records_the_result_and_unblocks_staging(seeded: Settings) -> None:
    at = pick(open_page("promote"), "1")

    at.button(key="promote.gate").click().run()

    assert registry.get_version(seeded, "1").gate_passed is True
    assert not at.button(key="promote.to.staging").disabled


def test_release_to_staging_moves_the_alias_and_smoke_tests(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "1")
    at = pick(open_page("promote"), "1")

    at.button(key="promote.to.staging").click().run()
    at = finish_tasks(at)

    assert registry.aliases(seeded) == {"staging": "1"}
    assert registry.get_version(seeded, "1").smoke_passed is True
    assert "staging now holds v1" in at.success[0].value


def test_a_released_versions_reason_is_recorded_then_cleared(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "1")
    at = pick(open_page("promote"), "1")
    reason(at).input("v1 smoke passed on staging").run()

    at.button(key="promote.to.staging").click().run()
    at = finish_tasks(at)

    promoted = audit.history(seeded, kinds=("promote",))
    assert [e.reason for e in promoted] == ["v1 smoke passed on staging"]
    assert reason(at).value == ""


def test_a_reason_does_not_carry_over_to_another_version(seeded: Settings) -> None:
    at = pick(open_page("promote"), "1")
    reason(at).input("v1 smoke passed on staging").run()

    at = pick(at, "2")
    assert reason(at).value == ""
    assert reason(pick(at, "1")).value == ""


def test_redeploying_the_holder_says_redeployed(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "1")
    rollout.release(seeded, "1", "staging")
    at = pick(open_page("promote"), "1")

    at.button(key="promote.to.staging").click().run()
    at = finish_tasks(at)

    assert at.success[0].value.startswith("redeployed v1 on staging;")


def test_a_running_task_shows_as_running(seeded: Settings) -> None:
    from pages import _components as ui

    release = threading.Event()
    ui.task_board().start("staging", "Slow work", "tester", lambda _p: release.wait(60))
    try:
        at = open_page("promote")
    finally:
        release.set()

    assert at.status[0].label == "Slow work — running…"
    assert at.status[0].state == "running"


def test_a_pass_under_an_old_policy_reads_stale(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "1")
    stricter = gates.load_policy(seeded).with_thresholds({"f1": 0.5})
    gates.save_policy(seeded, stricter, "a new bar")

    at = pick(open_page("promote"), "1")

    stale = ":orange-badge[:material/history: gate stale]"
    assert any(stale in m.value for m in at.markdown)
    assert at.selectbox(key="promote.version").options[-1].startswith("v1 · gate stale")


def test_a_failed_gate_names_its_checks_and_explains_once(seeded: Settings) -> None:
    fail_the_gate(seeded, "1")

    at = pick(open_page("promote"), "1")

    texts = [e.value for e in (*at.caption, *at.markdown)]
    assert "failed on accuracy, f1" in texts
    needs = next(t for t in texts if "**Needs**" in t)
    assert "the gate failed on accuracy, f1 → train a better version" in needs
    assert sum("accuracy 0.9" in t for t in texts) == 1  # the expander's list


def test_a_move_made_meanwhile_is_reported_not_overwritten(seeded: Settings) -> None:
    for version in ("1", "2"):
        gates.evaluate_gate(seeded, version)
    at = pick(open_page("promote"), "1")
    promotion.promote(seeded, "2", "staging", reason="someone else")

    at.button(key="promote.to.staging").click().run()
    at = finish_tasks(at)

    assert registry.aliases(seeded) == {"staging": "2"}
    assert "moved meanwhile: expected nothing, found version 2" in at.error[0].value


def test_a_failed_precondition_shows_its_reason(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "1")
    at = pick(open_page("promote"), "1")
    stricter = gates.load_policy(seeded).with_thresholds({"f1": 0.5})
    gates.save_policy(seeded, stricter, "policy changed meanwhile")

    at.button(key="promote.to.staging").click().run()
    at = finish_tasks(at)

    assert "cannot promote version 1 to staging" in at.error[0].value
    assert "run the gate again" in at.error[0].value
    assert registry.aliases(seeded) == {}


def test_override_needs_a_written_reason(seeded: Settings) -> None:
    at = open_page("promote")
    assert at.button(key="promote.override").disabled

    at.text_area(key="promote.override_reason.2").input("hotfix, ticket OPS-1").run()

    assert not at.button(key="promote.override").disabled


def test_rollback_asks_for_a_reason_then_returns_production(seeded: Settings) -> None:
    for version in ("1", "2"):
        promotion.promote(seeded, version, "production", override_reason="tests")
    at = open_page("promote")

    at.button(key="promote.rollback.production").click().run()
    assert at.button(key="promote.rollback_confirm.production").disabled
    at.text_input(key="promote.rollback_reason.production").input("v2 is slow").run()
    at.button(key="promote.rollback_confirm.production").click().run()
    at = finish_tasks(at)

    assert registry.aliases(seeded)["production"] == "1"
    assert "production now holds v1 (was v2)" in at.success[0].value
