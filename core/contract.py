"""The original CI pipeline's gate contract, kept working unchanged.

The pipeline's gate script read ``{"run_id", "accuracy", "model_version"}`` on
stdin and compared the accuracy with ``ACCURACY_THRESHOLD``. This module holds
that comparison with no heavy imports, so ``python -m core gate --stdin`` answers
in well under a second instead of loading MLflow and scikit-learn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from core.errors import GateError


def evaluate_payload(payload: Any, threshold: float) -> dict[str, Any]:
    """The original pipeline's gate: compare a reported accuracy with a threshold.

    Args:
        payload: ``{"run_id": ..., "accuracy": ..., "model_version": ...}``.
        threshold: the accuracy a version needs.

    Returns:
        ``{"passed", "accuracy", "threshold", "model_version", "run_id"}`` in
        that order, the fields the original gate script printed.

    Raises:
        GateError: the payload is not an object with a numeric accuracy.
    """
    if not isinstance(payload, Mapping):
        raise GateError(
            'gate input must be a JSON object like {"run_id": "...", '
            '"accuracy": 0.93, "model_version": 1}.'
        )
    missing = [k for k in ("run_id", "accuracy", "model_version") if k not in payload]
    if missing:
        raise GateError(
            f"gate input lacks {', '.join(missing)}; expected "
            '{"run_id": "...", "accuracy": 0.93, "model_version": 1}.'
        )
    accuracy = payload["accuracy"]
    if (
        isinstance(accuracy, bool)
        or not isinstance(accuracy, int | float)
        or not math.isfinite(accuracy)
    ):
        # Said as JSON (true, "0.9"), the language the caller wrote it in.
        shown = json.dumps(accuracy, default=repr)
        raise GateError(f"accuracy {shown} is not a number; send e.g. 0.93.")
    if not 0 <= accuracy <= 1:
        raise GateError(
            f"accuracy {accuracy} is outside 0-1; send the fraction of correct "
            "predictions, e.g. 0.93 (not a percentage)."
        )
    return {
        "passed": bool(accuracy >= threshold),
        "accuracy": accuracy,
        "threshold": threshold,
        "model_version": payload["model_version"],
        "run_id": payload["run_id"],
    }
