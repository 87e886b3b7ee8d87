"""The Overview page: aliases, live health, mismatch banner, first model."""

from __future__ import annotations

import time

import pytest

from core import gates, jobs, promotion, registry
from core.config import Settings
from core.deployment import backend_for
from tests.pages.conftest import open_page

pytestmark = pytest.mark.integration


def test_shows_which_versions_hold_the_stages(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "2")
    promotion.promote(seeded, "2", "staging", reason="looks good")

    at = open_page("overview")

    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Versions": "2",
        "Staging alias": "v2",
        "Production alias": "unset",
    }


def test_lists_the_last_five_audit_events(seeded: Settings) -> None:
    for version in ("1", "2", "1", "2", "1", "2"):
        promotion.promote(seeded, version, "staging", override_reason="tests")

    at = open_page("overview")

    feed = [m.value for m in at.markdown if "UTC · page-tests" in m.value]
    assert len(feed) == 5


def test_a_server_serving_another_version_raises_a_red_banner(
    seeded: Settings,
) -> None:
    for version in ("1", "2"):
        gates.evaluate_gate(seeded, version)
    promotion.promote(seeded, "1", "staging")
    backend_for(seeded, "staging").launch("staging")
    promotion.promote(seeded, "2", "staging")

    at = open_page("overview")

    assert "serving version 1 but staging is version 2" in at.error[0].value


def test_a_stage_without_a_server_names_the_app_step_not_a_command(
    seeded: Settings,
) -> None:
    at = open_page("overview")

    captions = [c.value for c in at.caption if "server answers" in c.value]
    assert len(captions) == 2
    assert all(c.endswith(". Launch it on the Deployments page.") for c in captions)
    assert not any("python -m core" in c.value for c in at.caption)


def test_a_gate_passed_under_an_old_policy_reads_stale(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "1")
    stricter = gates.load_policy(seeded).with_thresholds({"f1": 0.5})
    gates.save_policy(seeded, stricter, "a new bar")

    at = open_page("overview")

    gate = at.dataframe[0].value["gate"].tolist()
    assert gate == ["", "stale"]  # newest first: v2 never gated, v1 stale


def test_the_first_model_button_waits_while_a_model_trains(studio: Settings) -> None:
    at = open_page("overview")

    at.button(key="overview.train").click().run()
    other_tab = open_page("overview")

    assert at.button(key="overview.train").disabled
    assert other_tab.button(key="overview.train").disabled
    jobs.cancel(studio, at.session_state["overview.job"])


def test_empty_registry_trains_a_first_model_with_one_click(studio: Settings) -> None:
    at = open_page("overview")
    assert at.button(key="overview.train").label == "Train a first model"

    at.button(key="overview.train").click().run()
    deadline = time.monotonic() + 240
    while not registry.list_versions(studio) and time.monotonic() < deadline:
        time.sleep(1)
    at.run()

    assert registry.list_versions(studio)[0].version == "1"
    assert {m.label: m.value for m in at.metric}["Versions"] == "1"
