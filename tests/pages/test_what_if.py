"""The Gate what-if page against a real store: sliders re-judge, buttons write."""

from __future__ import annotations

from pathlib import Path

import pytest

from core import audit, gates, registry
from core.config import Settings
from tests.pages.conftest import open_page

pytestmark = pytest.mark.integration

POLICY_WITH_EVERY_KIND = """
[[checks]]
name = "accuracy"
kind = "metric"
metric = "accuracy"
threshold = 0.9

[[checks]]
name = "no_worse"
kind = "champion"
metric = "accuracy"
threshold = -0.01

[[checks]]
name = "p95_ms"
kind = "latency"
rows = 5
threshold = 200.0

[[checks]]
name = "inputs"
kind = "schema"
threshold = 0
"""


def slider_key(policy: gates.Policy, check: str) -> str:
    return f"whatif.{policy.digest}.{check}"


def test_every_check_of_the_policy_gets_a_slider(seeded: Settings) -> None:
    policy = gates.load_policy(seeded)

    at = open_page("what_if")

    assert not at.exception
    assert [s.key for s in at.slider] == [
        slider_key(policy, c.name) for c in policy.checks
    ]
    assert at.metric[0].value.endswith("of 2")


def test_a_slider_shows_as_many_decimals_as_its_step(seeded: Settings) -> None:
    policy = gates.load_policy(seeded)

    at = open_page("what_if")

    slider = at.slider(key=slider_key(policy, "accuracy"))
    assert (slider.step, slider.proto.format) == (0.005, "%.3f")


def test_moving_a_threshold_rejudges_without_measuring_again(seeded: Settings) -> None:
    policy = gates.load_policy(seeded)
    at = open_page("what_if")

    at.slider(key=slider_key(policy, "accuracy")).set_value(0.999).run()

    assert at.metric[0].value == "0 of 2"
    assert "accuracy" in at.dataframe[0].value["fails on"].tolist()[0]


def test_any_check_kind_gets_a_slider_from_its_range(
    seeded: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_WITH_EVERY_KIND)
    monkeypatch.setenv("STUDIO_GATE_POLICY", str(path))

    at = open_page("what_if")

    assert not at.exception
    assert [s.label for s in at.slider] == [
        "accuracy ≥",
        "no_worse ≥",
        "p95_ms ≤",
        "inputs ≤",
    ]
    assert at.slider[2].max >= 500.0


def test_gate_button_records_a_gate_result(seeded: Settings) -> None:
    at = open_page("what_if")

    at.selectbox(key="whatif.gate_version").set_value("1").run()
    at.button(key="whatif.run_gate").click().run()

    assert registry.get_version(seeded, "1").gate_passed is True
    assert [e.kind for e in audit.history(seeded)] == ["gate"]
    assert not at.error


def test_save_policy_writes_the_file_and_an_audit_event(seeded: Settings) -> None:
    policy = gates.load_policy(seeded)
    at = open_page("what_if")

    at.slider(key=slider_key(policy, "f1")).set_value(0.8).run()
    at.text_input(key="whatif.reason").input("f1 bar too strict for v1").run()
    at.button(key="whatif.save").click().run()

    assert gates.load_policy(seeded).check("f1").threshold == 0.8
    saved = audit.history(seeded, kinds=("policy",))
    assert [(e.actor, e.reason) for e in saved] == [
        ("page-tests", "f1 bar too strict for v1")
    ]


def test_saving_the_policy_clears_the_changes_and_the_reason(
    seeded: Settings,
) -> None:
    policy = gates.load_policy(seeded)
    at = open_page("what_if")
    at.slider(key=slider_key(policy, "f1")).set_value(0.8).run()
    at.text_input(key="whatif.reason").input("f1 bar too strict for v1").run()

    at.button(key="whatif.save").click().run()

    assert "No threshold differs from the policy in force yet." in [
        c.value for c in at.caption
    ]
    assert at.text_input(key="whatif.reason").value == ""


def test_save_waits_for_a_reason(seeded: Settings) -> None:
    policy = gates.load_policy(seeded)
    at = open_page("what_if")

    at.slider(key=slider_key(policy, "f1")).set_value(0.8).run()
    save = at.button(key="whatif.save")
    assert (save.disabled, save.help) == (
        True,
        "Write why first; it is recorded in the audit log.",
    )

    at.text_input(key="whatif.reason").input("f1 bar too strict").run()
    assert not at.button(key="whatif.save").disabled
