"""The Audit page: recorded events, filters, evidence and CSV export."""

from __future__ import annotations

import pytest

from core import gates, promotion
from core.config import Settings
from tests.pages.conftest import open_page

pytestmark = pytest.mark.integration


@pytest.fixture
def history(seeded: Settings) -> Settings:
    """Two gate decisions and one promotion in the audit log."""
    gates.evaluate_gate(seeded, "1")
    gates.evaluate_gate(seeded, "2")
    promotion.promote(seeded, "1", "staging", reason="first staging")
    return seeded


def test_every_event_is_listed_newest_first(history: Settings) -> None:
    at = open_page("audit")

    table = at.dataframe[0].value
    assert table["kind"].tolist() == ["promote", "gate", "gate"]
    assert table["reason"].tolist()[0] == "first staging"


def test_kind_filter_narrows_the_table(history: Settings) -> None:
    at = open_page("audit")

    at.multiselect(key="audit.kinds").select("gate").run()

    assert at.dataframe[0].value["kind"].tolist() == ["gate", "gate"]


def test_version_filter_narrows_the_table(history: Settings) -> None:
    at = open_page("audit")

    at.text_input(key="audit.version").input("2").run()

    assert at.dataframe[0].value["version"].tolist() == ["2"]


def test_selected_event_shows_its_evidence(history: Settings) -> None:
    at = open_page("audit")
    gate_runs = at.dataframe[0].value.query("kind == 'gate'")

    at.selectbox(key="audit.event").set_value(gate_runs["run_id"].iloc[0]).run()

    checks = at.dataframe[1].value
    policy = gates.load_policy(history)
    assert checks["name"].tolist() == [c.name for c in policy.checks]
    assert at.json[0].value


def test_export_offers_the_shown_events_as_csv(history: Settings) -> None:
    at = open_page("audit")

    export = at.get("download_button")[0]
    assert export.label == "Export CSV"
    assert not export.proto.disabled


def test_no_matching_events_says_so(seeded: Settings) -> None:
    at = open_page("audit")

    assert at.info[0].value == "No events match these filters."
