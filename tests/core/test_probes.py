"""Probe, smoke and predict against a real staging server on loopback."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
import pytest

from core import audit, promotion, tags
from core.artifacts import golden_xy
from core.deployment import ServerStatus
from core.errors import ProbeError
from core.probes import _identity_problems, _schema_problems, predict, probe, smoke
from core.registry import get_version
from tests.core.conftest import Store

pytestmark = pytest.mark.serving


def golden_records(store: Store, rows: int = 3) -> list[dict[str, Any]]:
    info = get_version(store.settings, store.versions[0])
    found = golden_xy(store.settings, info.run_id)
    assert found is not None
    records: list[dict[str, Any]] = json.loads(
        found[0].head(rows).to_json(orient="records")
    )
    return records


def test_probe_is_green_when_serving_the_alias_version(
    store: Store, staging: ServerStatus
) -> None:
    result = probe(store.settings, "staging")
    assert (result.light, result.matches) == ("green", True)
    assert result.health["stage"] == "staging"
    assert result.served_version == result.alias_version == store.versions[0]


def test_probe_flags_a_mismatch_with_both_versions(
    store: Store, staging: ServerStatus
) -> None:
    first, second = store.versions
    promotion.promote(store.settings, second, "staging", reason="mismatch test")
    try:
        result = probe(store.settings, "staging")
    finally:
        promotion.promote(store.settings, first, "staging", reason="restore")
    assert (result.light, result.matches) == ("red", False)
    assert result.message.startswith(
        f"MISMATCH: serving version {first} but staging is version {second}"
    )


def test_probe_and_smoke_refuse_a_server_of_another_model(
    store: Store, staging: ServerStatus
) -> None:
    other = dataclasses.replace(store.settings, model_name="ghost-model")
    result = probe(other, "staging")
    assert (result.light, result.matches) == ("red", False)
    assert "serves model " in result.message and "'ghost-model'" in result.message
    with pytest.raises(ProbeError, match="cannot smoke-test staging: MISMATCH"):
        smoke(other, "staging", rows=3)


def test_same_version_number_from_another_run_is_a_mismatch(store: Store) -> None:
    ours = get_version(store.settings, "1").run_id
    health = {
        "model_name": store.settings.model_name,
        "stage": "staging",
        "model_version": "1",
        "run_id": "run-of-another-store",
    }
    problems = _identity_problems(store.settings, "staging", health)
    assert len(problems) == 1
    assert "belongs to another tracking store" in problems[0]
    assert f"this registry's version 1 comes from run {ours}" in problems[0]
    same = {**health, "run_id": ours}
    assert _identity_problems(store.settings, "staging", same) == []


def test_a_version_this_registry_lacks_belongs_to_another_store(store: Store) -> None:
    health = {
        "model_name": store.settings.model_name,
        "stage": "staging",
        "model_version": "99",
        "run_id": "run-elsewhere",
    }
    [problem] = _identity_problems(store.settings, "staging", health)
    assert "this registry has no version 99" in problem
    assert "STUDIO_STAGING_PORT" in problem


def test_a_server_answering_for_the_other_stage_is_a_mismatch(store: Store) -> None:
    health = {"model_name": store.settings.model_name, "stage": "production"}
    problems = _identity_problems(store.settings, "staging", health)
    assert problems and "says it is the production server" in problems[0]


def test_probe_is_red_when_nothing_answers(store: Store) -> None:
    result = probe(store.settings, "production")
    assert (result.light, result.reachable, result.http_status) == ("red", False, None)
    assert "python -m core deploy --stage production" in result.message


def test_smoke_passes_and_records_its_result(
    store: Store, staging: ServerStatus
) -> None:
    result = smoke(store.settings, "staging", rows=20)
    assert (result.passed, result.rows, result.mismatches) == (True, 20, 0)
    assert 0 < result.p50_ms <= result.p95_ms
    info = get_version(store.settings, result.version)
    assert info.smoke_passed is True
    assert info.tags[tags.SMOKE_STAGE] == "staging"
    assert float(info.tags[tags.SMOKE_P95_MS]) == result.p95_ms


def test_smoke_is_an_audit_event(store: Store, staging: ServerStatus) -> None:
    result = smoke(store.settings, "staging", rows=5)
    events = audit.history(store.settings, kinds=("smoke",), limit=1)
    assert events[0].run_id == result.audit_run_id
    assert (events[0].alias, events[0].version) == ("staging", result.version)
    assert events[0].outcome == "passed"


def test_smoke_without_record_leaves_no_trace(
    store: Store, staging: ServerStatus
) -> None:
    before = len(audit.history(store.settings, kinds=("smoke",)))
    result = smoke(store.settings, "staging", rows=3, record=False)
    assert result.passed and result.audit_run_id == ""
    assert len(audit.history(store.settings, kinds=("smoke",))) == before


def test_smoke_refuses_a_stage_without_a_server(store: Store) -> None:
    with pytest.raises(ProbeError, match="cannot smoke-test production: no "):
        smoke(store.settings, "production")


def test_predict_returns_predictions_and_the_version(
    store: Store, staging: ServerStatus
) -> None:
    answer = predict(store.settings, "staging", golden_records(store, 2))
    assert len(answer["predictions"]) == 2
    assert answer["model_version"] == store.versions[0]


def test_predict_raises_with_the_servers_reason(
    store: Store, staging: ServerStatus
) -> None:
    record = golden_records(store, 1)[0]
    column = next(iter(record))
    del record[column]
    with pytest.raises(ProbeError, match=r"refused the request \(422\)") as failure:
        predict(store.settings, "staging", [record])
    assert column in str(failure.value)


def _bad_bodies(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    column = next(iter(records[0]))
    missing = {k: v for k, v in records[0].items() if k != column}
    wrong_type = {**records[0], column: "not a number"}
    return [
        ("not json", {"content": b"{not json", "headers": _JSON}),
        ("empty body", {"content": b"", "headers": _JSON}),
        ("a list", {"json": records}),
        ("empty object", {"json": {}}),
        ("empty inputs", {"json": {"inputs": []}}),
        ("missing column", {"json": {"inputs": [missing]}}),
        ("wrong type", {"json": {"inputs": [wrong_type]}}),
        ("unknown field", {"json": {"rows": records}}),
        ("both forms", {"json": {"inputs": records, "dataframe_split": {}}}),
        ("split without data", {"json": {"dataframe_split": {"columns": [column]}}}),
        ("too large", {"content": b" " * (2 * 1024 * 1024), "headers": _JSON}),
    ]


_JSON = {"content-type": "application/json"}


def test_bad_input_gets_4xx_never_5xx(store: Store, staging: ServerStatus) -> None:
    answers = {}
    for name, request in _bad_bodies(golden_records(store)):
        response = httpx.post(f"{staging.url}/predict", timeout=30, **request)
        answers[name] = (response.status_code, response.json().get("detail"))
    failed = {n: a for n, a in answers.items() if not 400 <= a[0] < 500 or not a[1]}
    assert failed == {}
    assert httpx.get(f"{staging.url}/health").status_code == 200


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "not a JSON object"),
        ({"predictions": [1], "model_version": "1"}, "list of 2 values"),
        (
            {"predictions": [1, 0], "probabilities": [0.2], "model_version": "1"},
            "'probabilities' should be null or a list of 2 objects",
        ),
        ({"predictions": [1, 0], "model_version": "7"}, "'model_version' is '7'"),
    ],
)
def test_schema_problems_name_what_is_wrong(body: Any, problem: str) -> None:
    found = _schema_problems(body, 2, "1")
    assert any(problem in text for text in found), found


def test_schema_of_a_correct_answer_has_no_problems() -> None:
    body = {
        "predictions": [1, 0],
        "probabilities": [{"0": 0.1, "1": 0.9}, {"0": 0.8, "1": 0.2}],
        "model_version": "1",
    }
    assert _schema_problems(body, 2, "1") == []
