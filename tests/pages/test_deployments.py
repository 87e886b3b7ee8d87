"""The Deployments page: both stages, launch / stop, health, test requests."""

from __future__ import annotations

import json
import re

import pytest

from core import audit, gates, promotion, registry
from core.config import Settings
from core.deployment import backend_for
from tests.pages.conftest import finish_tasks, open_page

pytestmark = pytest.mark.integration


def send(at, stage: str, body: str):  # type: ignore[no-untyped-def]
    at.text_area(key=f"deploy.body.{stage}").input(body)
    submit = next(b for b in at.button if b.label == "Send" and stage in b.id)
    return submit.click().run()


def test_both_stages_side_by_side_with_their_backend(seeded: Settings) -> None:
    at = open_page("deployments")

    assert "process (STUDIO_DEPLOY_BACKEND=process)" in at.caption[0].value
    assert [m.value for m in at.metric if m.label.endswith("alias")] == [
        "unset",
        "unset",
    ]
    assert not at.button(key="deploy.launch.production").disabled
    assert at.button(key="deploy.stop.production").disabled


def test_an_idle_stage_says_what_to_press_not_what_to_type(seeded: Settings) -> None:
    at = open_page("deployments")

    health = [c.value for c in at.caption if "server answers" in c.value]
    assert health and all(c.endswith("Press Launch to start it.") for c in health)
    assert not any("python -m core" in c.value for c in at.caption)


def test_a_stopped_server_shows_no_start_time(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "1")
    promotion.promote(seeded, "1", "staging")
    backend_for(seeded, "staging").launch("staging")
    backend_for(seeded, "staging").stop("staging")

    at = open_page("deployments")

    stopped = next(m.value for m in at.markdown if "dns: stopped]" in m.value)
    assert "since" not in stopped
    stamp = re.compile(r"stopped .*at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
    assert any(stamp.search(c.value) for c in at.caption)


def test_launch_serve_test_requests_and_stop(seeded: Settings) -> None:
    gates.evaluate_gate(seeded, "1")
    promotion.promote(seeded, "1", "staging")
    at = open_page("deployments")

    at = finish_tasks(at.button(key="deploy.launch.staging").click().run())
    assert next(m.value for m in at.metric if m.label == "Serves") == "v1"
    assert ":green-badge" in next(m.value for m in at.markdown if "Healthy" in m.value)

    rows = json.loads(at.text_area(key="deploy.body.staging").value)
    at = send(at, "staging", json.dumps(rows))
    assert at.json[0].value and json.loads(at.json[0].value)["model_version"] == "1"

    at = send(at, "staging", '[{"no such column": 1}]')
    assert "refused the request (422)" in at.error[0].value

    at = finish_tasks(at.button(key="deploy.stop.staging").click().run())
    assert registry.aliases(seeded)["staging"] == "1"
    assert any(":gray-badge[:material/dns: stopped]" in m.value for m in at.markdown)
    deploys = audit.history(seeded, kinds=("deploy",), alias="staging")
    assert [(e.outcome, e.version) for e in deploys[:2]] == [
        ("stopped", "1"),
        ("running", "1"),
    ]


def test_a_body_that_is_not_json_says_how_to_write_it(seeded: Settings) -> None:
    at = open_page("deployments")

    at = send(at, "staging", "not json")

    assert "is not valid JSON" in at.error[0].value
