"""Tests of core/contract.py: the original pipeline's stdin gate."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from core import contract
from core.errors import GateError


def test_payload_result_has_the_original_fields_in_order() -> None:
    payload = {"run_id": "abc", "accuracy": 0.8975, "model_version": 1}

    result = contract.evaluate_payload(payload, 0.9)

    assert json.dumps(result) == (
        '{"passed": false, "accuracy": 0.8975, "threshold": 0.9, '
        '"model_version": 1, "run_id": "abc"}'
    )
    assert contract.evaluate_payload(payload, 0.85)["passed"] is True


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            [0.9],
            'gate input must be a JSON object like {"run_id": "...", "accuracy": '
            '0.93, "model_version": 1}.',
        ),
        (
            {"accuracy": 0.9},
            'gate input lacks run_id, model_version; expected {"run_id": "...", '
            '"accuracy": 0.93, "model_version": 1}.',
        ),
        (
            {"run_id": "a", "accuracy": "0.9", "model_version": 1},
            'accuracy "0.9" is not a number; send e.g. 0.93.',
        ),
        (
            {"run_id": "a", "accuracy": True, "model_version": 1},
            "accuracy true is not a number; send e.g. 0.93.",
        ),
        (
            {"run_id": "a", "accuracy": math.nan, "model_version": 1},
            "accuracy NaN is not a number; send e.g. 0.93.",
        ),
        (
            {"run_id": "a", "accuracy": 89.75, "model_version": 1},
            "accuracy 89.75 is outside 0-1; send the fraction of correct "
            "predictions, e.g. 0.93 (not a percentage).",
        ),
    ],
)
def test_bad_payloads_are_refused(payload: Any, message: str) -> None:
    with pytest.raises(GateError) as raised:
        contract.evaluate_payload(payload, 0.9)

    assert str(raised.value) == message
