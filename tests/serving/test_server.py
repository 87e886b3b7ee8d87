"""The real server over HTTP: health, metadata, predictions, bad input, limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.conftest import free_port
from tests.serving.conftest import (
    CATEGORICAL,
    INT_MODEL,
    MIXED_MODEL,
    UNSIGNED_MODEL,
    ModelStore,
    ServingProcess,
    records,
    register_unsigned,
    start_server,
)

pytestmark = pytest.mark.serving


def predict(server: ServingProcess, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json=body, timeout=30)


def post_raw(
    server: ServingProcess, content: bytes, content_type: str = "application/json"
) -> httpx.Response:
    return httpx.post(
        f"{server.url}/predict",
        content=content,
        headers={"Content-Type": content_type},
        timeout=30,
    )


def test_health_names_the_aliased_version_not_the_latest(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    health = httpx.get(f"{staging_server.url}/health").json()

    assert health["status"] == "ok"
    assert (health["stage"], health["model_name"]) == ("staging", MIXED_MODEL)
    assert health["model_version"] == "1"
    assert health["run_id"] == model_store.run_ids[(MIXED_MODEL, "1")]
    assert health["model_uri"] == f"models:/{MIXED_MODEL}/1"
    assert health["loaded_at"]


def test_start_log_names_stage_version_and_store(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    run_id = model_store.run_ids[(MIXED_MODEL, "1")]
    expected = (
        f"serving model '{MIXED_MODEL}' stage staging version 1 "
        f"(run {run_id}) from {model_store.tracking_uri}"
    )
    assert expected in staging_server.log()


def test_metadata_shows_signature_classes_and_metrics(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    metadata = httpx.get(f"{staging_server.url}/metadata").json()

    inputs = {c["name"]: c["type"] for c in metadata["signature"]["inputs"]}
    assert list(inputs) == list(model_store.holdout.columns)
    assert inputs[CATEGORICAL] == "string" and inputs["mean radius"] == "double"
    assert metadata["classes"] == ["benign", "malignant"]
    assert metadata["metrics"] == model_store.metrics[(MIXED_MODEL, "1")]
    assert (metadata["model_version"], metadata["stage"]) == ("1", "staging")


def test_records_match_offline_pyfunc_predictions(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    frame = model_store.holdout
    answer = predict(staging_server, {"inputs": records(frame)})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = model_store.offline_predictions(MIXED_MODEL, "1", frame)
    assert body["predictions"] == expected
    assert (body["model_version"], body["stage"]) == ("1", "staging")


def test_dataframe_split_matches_offline_pyfunc_predictions(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    frame = model_store.holdout[list(reversed(model_store.holdout.columns))]
    rows = records(frame)
    split = {"columns": list(frame.columns), "data": [list(r.values()) for r in rows]}

    answer = predict(staging_server, {"dataframe_split": split})

    assert answer.status_code == 200, answer.text
    expected = model_store.offline_predictions(MIXED_MODEL, "1", model_store.holdout)
    assert answer.json()["predictions"] == expected


def test_probabilities_cover_every_class_and_sum_to_one(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    body = predict(staging_server, {"inputs": records(model_store.holdout.head(5))})

    for row in body.json()["probabilities"]:
        assert set(row) == {"benign", "malignant"}
        assert sum(row.values()) == pytest.approx(1.0)


def test_integer_numbers_nulls_and_nan_are_accepted(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    row = records(model_store.holdout.head(1))[0]
    row.update({"mean radius": 14, "mean texture": None, CATEGORICAL: None})
    nan_body = json.dumps({"inputs": [row | {"mean area": float("nan")}]}).encode()

    assert predict(staging_server, {"inputs": [row]}).status_code == 200
    assert post_raw(staging_server, nan_body).status_code == 200


def _row(store: ModelStore, **changes: Any) -> dict[str, Any]:
    return records(store.holdout.head(1))[0] | changes


def _without(store: ModelStore, column: str) -> dict[str, Any]:
    row = _row(store)
    del row[column]
    return row


def _split(store: ModelStore, drop: str | None = None, width: int | None = None) -> Any:
    columns = [c for c in store.holdout.columns if c != drop]
    row = [_row(store)[c] for c in columns][: width or len(columns)]
    return {"dataframe_split": {"columns": columns, "data": [row]}}


BAD_BODIES = {
    "text for a double": (
        lambda s: {"inputs": [_row(s, **{"mean radius": "abc"})]},
        "column 'mean radius' expects a finite number (double) or null; "
        "got 'abc' in row 0",
    ),
    "boolean for a double": (
        lambda s: {"inputs": [_row(s, **{"mean radius": True})]},
        "column 'mean radius' expects a finite number (double) or null; got true",
    ),
    "number for a string": (
        lambda s: {"inputs": [_row(s, clinic=5)]},
        "column 'clinic' expects a string or null; got 5 in row 0",
    ),
    "bad value in the second row": (
        lambda s: {"inputs": [_row(s), _row(s, clinic=["a"])]},
        "column 'clinic' expects a string or null; got a list in row 1",
    ),
    "missing column": (
        lambda s: {"inputs": [_without(s, CATEGORICAL)]},
        "row 0 is missing column 'clinic'",
    ),
    "extra column": (
        lambda s: {"inputs": [_row(s, **{"shoe size": 42})]},
        "row 0 has unknown column 'shoe size'; GET /metadata lists",
    ),
    "empty inputs": (lambda s: {"inputs": []}, "'inputs' is empty"),
    "inputs not a list": (
        lambda s: {"inputs": _row(s)},
        "'inputs' must be a list of records (objects); got an object",
    ),
    "record not an object": (
        lambda s: {"inputs": [[1, 2]]},
        "'inputs' row 0 must be an object of column: value; got a list",
    ),
    "unknown top-level field": (
        lambda s: {"rows": [_row(s)]},
        "unknown top-level field 'rows'",
    ),
    "both shapes at once": (
        lambda s: {"inputs": [_row(s)], **_split(s)},
        "send exactly one of 'inputs' (a list of records) or 'dataframe_split'",
    ),
    "empty object": (lambda s: {}, "got an empty object"),
    "split row too short": (
        lambda s: _split(s, width=2),
        "'dataframe_split.data' row 0 has 2 values but there are 31 columns",
    ),
    "split missing column": (
        lambda s: _split(s, drop=CATEGORICAL),
        "'dataframe_split.columns' is missing column 'clinic'",
    ),
    "split columns not names": (
        lambda s: {"dataframe_split": {"columns": [1], "data": [[1]]}},
        "'dataframe_split.columns' must be a list of column names",
    ),
    "split data empty": (
        lambda s: {"dataframe_split": {"columns": list(s.holdout.columns), "data": []}},
        "'dataframe_split.data' is empty",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_body_gets_422_naming_field_and_rule(
    staging_server: ServingProcess, model_store: ModelStore, case: str
) -> None:
    build, message = BAD_BODIES[case]

    answer = predict(staging_server, build(model_store))

    assert answer.status_code == 422, answer.text
    assert message in answer.json()["detail"]


BAD_RAW = {
    "not JSON": (b"age=abc", "application/json", 400, "request body is not valid JSON"),
    "no body": (b"", "application/json", 400, "request body is empty"),
    "JSON array": (b"[1, 2]", "application/json", 422, "must be a JSON object"),
    "form encoded": (b"a=1", "application/x-www-form-urlencoded", 422, "JSON object"),
}


@pytest.mark.parametrize("case", list(BAD_RAW))
def test_malformed_body_gets_4xx_with_a_reason(
    staging_server: ServingProcess, case: str
) -> None:
    content, content_type, status, message = BAD_RAW[case]

    answer = post_raw(staging_server, content, content_type)

    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]


def test_infinity_is_rejected_as_not_finite(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    body = json.dumps({"inputs": [_row(model_store, **{"mean radius": 123456.789})]})
    body = body.replace("123456.789", "Infinity")

    answer = post_raw(staging_server, body.encode())

    assert answer.status_code == 422
    assert "got Infinity in row 0" in answer.json()["detail"]


def test_server_keeps_serving_after_bad_input(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    post_raw(staging_server, b"{{{")
    predict(staging_server, {"inputs": [_row(model_store, clinic=1)]})

    assert httpx.get(f"{staging_server.url}/health").status_code == 200
    assert predict(staging_server, {"inputs": [_row(model_store)]}).status_code == 200


def test_body_over_the_limit_gets_413_naming_the_limit(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    body = {"inputs": [_row(model_store)] * 2500}  # about 2 MiB

    answer = predict(staging_server, body)

    assert answer.status_code == 413
    assert "the limit is 1048576 bytes (MAX_PAYLOAD_BYTES)" in answer.json()["detail"]


def test_streamed_body_over_the_limit_gets_413(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    chunk = json.dumps(_row(model_store)).encode() + b","

    def stream() -> Iterator[bytes]:
        yield b'{"inputs": ['
        for _ in range(2500):
            yield chunk

    answer = httpx.post(
        f"{staging_server.url}/predict",
        content=stream(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )

    assert answer.status_code == 413
    assert "MAX_PAYLOAD_BYTES" in answer.json()["detail"]


def test_concurrent_single_rows_are_batched_and_answered_correctly(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    frame = model_store.holdout.head(48)
    rows = records(frame)

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(
            pool.map(lambda r: predict(staging_server, {"inputs": [r]}), rows)
        )

    expected = model_store.offline_predictions(MIXED_MODEL, "1", frame)
    assert [a.json()["predictions"][0] for a in answers] == expected
    batched = [
        int(line.split(" rows for ")[1].split()[0])
        for line in staging_server.log().splitlines()
        if " rows for " in line
    ]
    assert max(batched) > 1


def test_bad_request_in_a_batch_fails_alone(
    staging_server: ServingProcess, model_store: ModelStore
) -> None:
    good = {"inputs": [_row(model_store)]}
    bad = {"inputs": [_row(model_store, clinic=7)]}
    bodies = [good, bad] * 8

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda b: predict(staging_server, b), bodies))

    assert [a.status_code for a in answers] == [200, 422] * 8


IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)"]
IRIS += ["petal width (cm)"]
IRIS_ROW = dict(zip(IRIS, [5.1, 3.5, 1.4, 0.2], strict=True))
FITTED_ON = "it was fitted on columns " + ", ".join(f"'{c}'" for c in IRIS)
FOUR_COLUMNS = "it expects 4 columns (features) per row, as it was fitted"
# Without a signature, what the server checks depends on what scikit-learn
# recorded at fit time: the column names (fitted on a frame) or their number.
OTHER_COLUMNS = [
    pytest.param(
        "frame",
        {"a": "x"},
        f"{FITTED_ON}; the input is missing columns "
        f"{', '.join(repr(c) for c in IRIS)} and has unknown column 'a'",
        id="frame-unknown-column",
    ),
    pytest.param(
        "frame",
        dict.fromkeys(IRIS[:3], 1),
        f"{FITTED_ON}; the input is missing column 'petal width (cm)'",
        id="frame-missing-column",
    ),
    pytest.param("array", {"a": "x"}, f"{FOUR_COLUMNS}; got 1: 'a'", id="array-string"),
    pytest.param("array", {"a": 1}, f"{FOUR_COLUMNS}; got 1: 'a'", id="array-number"),
]


@pytest.fixture(scope="module")
def unsigned_models(model_store: ModelStore) -> dict[str, str]:
    """Model names of iris logged without signature, by what they were fitted on."""
    return {fit: register_unsigned(model_store, fit) for fit in ("frame", "array")}


@pytest.fixture(scope="module", params=["frame", "array"])
def unsigned_server(
    request: pytest.FixtureRequest,
    unsigned_models: dict[str, str],
    model_store: ModelStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, ServingProcess]]:
    """Version 1 of a model without signature, fitted on a frame or an array."""
    name = unsigned_models[request.param]
    server = start_server(
        tmp_path_factory.mktemp(f"unsigned-{request.param}"),
        name,
        "staging",
        model_store.tracking_uri,
        {"BATCH_TIMEOUT": "0.05"},
    )
    try:
        server.wait_for_health()
        yield request.param, server
    finally:
        server.stop()


# The array-fitted model warns when given named columns, here as offline.
@pytest.mark.filterwarnings("ignore:X has feature names")
def test_unsigned_model_answers_as_offline_pyfunc(
    unsigned_server: tuple[str, ServingProcess], model_store: ModelStore
) -> None:
    fitted_on, server = unsigned_server
    rows = [IRIS_ROW, dict(zip(IRIS, [6.7, 3.0, 5.2, 2.3], strict=True))]

    answer = predict(server, {"inputs": rows})

    assert answer.status_code == 200, answer.text
    name = UNSIGNED_MODEL.format(fitted_on)
    expected = model_store.offline_predictions(name, "1", pd.DataFrame(rows))
    assert answer.json()["predictions"] == expected


@pytest.mark.parametrize(
    ("unsigned_server", "row", "message"),
    OTHER_COLUMNS,
    indirect=["unsigned_server"],
    scope="module",  # groups the cases by server, so each starts once
)
def test_unsigned_model_refuses_other_columns_with_422_naming_the_rule(
    unsigned_server: tuple[str, ServingProcess], row: dict[str, Any], message: str
) -> None:
    _, server = unsigned_server

    answer = predict(server, {"inputs": [row]})

    assert answer.status_code == 422, answer.text
    assert answer.json() == {"detail": f"the model rejected the input: {message}"}


def test_unsigned_model_refuses_a_string_for_a_number_with_422(
    unsigned_server: tuple[str, ServingProcess],
) -> None:
    _, server = unsigned_server

    answer = predict(server, {"inputs": [IRIS_ROW | {IRIS[0]: "x"}]})

    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == (
        "the model rejected the input: ValueError: could not convert string to "
        "float: 'x'"
    )


def test_bad_request_to_an_unsigned_model_fails_alone_in_its_batch(
    unsigned_server: tuple[str, ServingProcess],
) -> None:
    _, server = unsigned_server
    bodies = [{"inputs": [IRIS_ROW]}, {"inputs": [IRIS_ROW | {IRIS[1]: "x"}]}] * 8

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda b: predict(server, b), bodies))

    assert [a.status_code for a in answers] == [200, 422] * 8
    assert httpx.get(f"{server.url}/health").status_code == 200


@pytest.fixture
def unaliased_server(
    model_store: ModelStore, tmp_path: Path
) -> Iterator[ServingProcess]:
    """The integer-label model's production alias, not set yet; no batching."""
    server = start_server(
        tmp_path,
        INT_MODEL,
        "production",
        model_store.tracking_uri,
        {"MAX_BATCH_SIZE": "1"},
    )
    try:
        yield server
    finally:
        server.stop()
        model_store.client().delete_registered_model_alias(INT_MODEL, "production")


def test_missing_alias_answers_503_until_the_alias_is_set(
    unaliased_server: ServingProcess, model_store: ModelStore
) -> None:
    missing = unaliased_server.wait_for_health(status=503)
    model_store.client().set_registered_model_alias(INT_MODEL, "production", "1")
    ready = unaliased_server.wait_for_health(status=200, timeout=60)
    rows = records(model_store.holdout.drop(columns=[CATEGORICAL]).fillna(0.0))
    body = predict(unaliased_server, {"inputs": rows[:3]}).json()
    refused = predict(unaliased_server, {"inputs": [rows[0] | {"mean area": "x"}]})

    assert missing["status"] == "error"
    assert (
        "could not resolve alias 'production' of model 'serving-int'"
        in (missing["detail"])
    )
    assert "promote a version of 'serving-int' to production" in missing["detail"]
    assert (ready["model_version"], ready["stage"]) == ("1", "production")
    assert all(isinstance(p, int) for p in body["predictions"])
    assert set(body["probabilities"][0]) == {"0", "1"}
    assert refused.status_code == 422


API_KEY = "test-key-not-secret"


@pytest.fixture(scope="module")
def offline_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServingProcess]:
    """Points at a tracking server that is not running, and requires an API key."""
    server = start_server(
        tmp_path_factory.mktemp("offline"),
        MIXED_MODEL,
        "staging",
        f"http://user:hunter2@127.0.0.1:{free_port()}",
        {"LIT_SERVER_API_KEY": API_KEY},
    )
    try:
        yield server
    finally:
        server.stop()


def test_unreachable_tracking_server_gives_503_and_stays_up(
    offline_server: ServingProcess,
) -> None:
    health = offline_server.wait_for_health(status=503)

    assert health["status"] == "error"
    assert "is unreachable" in health["detail"]
    assert offline_server.process.poll() is None


def test_credentials_never_reach_health_or_logs(offline_server: ServingProcess) -> None:
    health = offline_server.wait_for_health(status=503)

    assert "hunter2" not in json.dumps(health)
    assert "http://***@127.0.0.1" in health["detail"]
    assert "hunter2" not in offline_server.log()


def test_predict_before_a_model_is_loaded_gets_503_with_the_reason(
    offline_server: ServingProcess,
) -> None:
    offline_server.wait_for_health(status=503)

    answer = httpx.post(
        f"{offline_server.url}/predict",
        json={"inputs": [{"x": 1}]},
        headers={"X-API-Key": API_KEY},
    )

    assert answer.status_code == 503
    assert "model is not ready (error): tracking server at" in answer.json()["detail"]


def test_api_key_guards_predict_and_metadata_but_not_health(
    offline_server: ServingProcess,
) -> None:
    offline_server.wait_for_health(status=503)
    keyed = {"X-API-Key": API_KEY}

    assert httpx.post(f"{offline_server.url}/predict", json={}).status_code == 401
    assert httpx.get(f"{offline_server.url}/metadata").status_code == 401
    assert httpx.get(f"{offline_server.url}/metadata", headers=keyed).status_code == 503
    assert (
        httpx.post(
            f"{offline_server.url}/predict", json={"inputs": []}, headers=keyed
        ).status_code
        == 503
    )
