"""Check a /predict body against the model signature and build its data frame.

Two body shapes are accepted: ``{"inputs": [{"col": value, ...}, ...]}`` and
MLflow's ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}}``.
Every rule that fails raises `PayloadError` with a message naming the field,
the rule and the offending value, so the client learns what to change. A model
without signature is checked against the columns it was fitted on instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

BODY_KEYS = ("inputs", "dataframe_split")
SPLIT_KEYS = ("columns", "data", "index")


class PayloadError(ValueError):
    """The request body breaks the input contract."""


@dataclass(frozen=True)
class Column:
    """One input column of the model signature.

    `required` is kept for the metadata only: the pipelines need every column,
    and MLflow's `infer_signature` marks a column optional when its training
    values contain nulls, so the server reads it as "may be null".
    """

    name: str
    type: str
    required: bool = True


def parse_payload(body: Any, columns: Sequence[Column] | None) -> pd.DataFrame:
    """Validate `body` and return one frame with the signature's column order.

    With `columns` None (a model logged without signature) only the shape of the
    body is checked.

    Raises:
        PayloadError: the body breaks a rule; the message says which.
    """
    if not isinstance(body, dict):
        raise PayloadError(
            f"request body must be a JSON object with 'inputs' or "
            f"'dataframe_split'; got {_kind(body)}"
        )
    unknown = [key for key in body if key not in BODY_KEYS]
    if unknown:
        raise PayloadError(
            f"unknown top-level field {_quoted(unknown)}; "
            f"send 'inputs' (a list of records) or 'dataframe_split'"
        )
    if len(body) != 1:
        raise PayloadError(
            "send exactly one of 'inputs' (a list of records) or 'dataframe_split'"
            + ("; got both" if body else "; got an empty object")
        )
    if "inputs" in body:
        names, values = _from_records(body["inputs"], columns)
    else:
        names, values = _from_split(body["dataframe_split"], columns)
    if columns is None:
        return pd.DataFrame(dict(zip(names, values, strict=True)))
    by_name = dict(zip(names, values, strict=True))
    return pd.DataFrame(
        {column.name: _convert(column, by_name[column.name]) for column in columns}
    )


def match_fitted(
    frame: pd.DataFrame, names: Sequence[str] | None, count: int | None
) -> pd.DataFrame:
    """Check a frame for a model without signature against what it was fitted on.

    `names` and `count` are what scikit-learn recorded at fit time, when it did.
    Checked here, a request learns every missing or unknown column at once; the
    model itself would stop at the first difference, or refuse a mere change
    of column order. Returns the frame with columns in the fitted order.

    Raises:
        PayloadError: the columns differ from the fitted ones; the message
            lists them.
    """
    given = [str(name) for name in frame.columns]
    if names is not None:
        missing = [name for name in names if name not in given]
        extra = [name for name in given if name not in names]
        problems = [f"is missing {_column_names(missing)}"] if missing else []
        if extra:
            problems.append(f"has unknown {_column_names(extra)}")
        if problems:
            raise PayloadError(
                f"the model rejected the input: it was fitted on "
                f"{_column_names(list(names))}; the input {' and '.join(problems)}"
            )
        return frame[list(names)]
    if count is not None and len(given) != count:
        raise PayloadError(
            f"the model rejected the input: it expects {count} columns (features) "
            f"per row, as it was fitted; got {len(given)}: {_quoted(given)}"
        )
    return frame


def _from_records(
    records: Any, columns: Sequence[Column] | None
) -> tuple[list[str], list[list[Any]]]:
    if not isinstance(records, list):
        raise PayloadError(
            f"'inputs' must be a list of records (objects); got {_kind(records)}"
        )
    if not records:
        raise PayloadError("'inputs' is empty; send at least one record")
    names = [c.name for c in columns] if columns is not None else None
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise PayloadError(
                f"'inputs' row {row} must be an object of column: value; "
                f"got {_kind(record)}"
            )
        if names is None:
            names = list(record)
        _check_names(list(record), names, f"row {row}")
    assert names is not None  # records is non-empty
    return names, [[record[name] for record in records] for name in names]


def _from_split(
    split: Any, columns: Sequence[Column] | None
) -> tuple[list[str], list[list[Any]]]:
    if not isinstance(split, dict):
        raise PayloadError(
            f"'dataframe_split' must be an object with 'columns' and 'data'; "
            f"got {_kind(split)}"
        )
    unknown = [key for key in split if key not in SPLIT_KEYS]
    if unknown:
        raise PayloadError(
            f"unknown field {_quoted(unknown)} in 'dataframe_split'; "
            f"expected 'columns' and 'data'"
        )
    names, data = split.get("columns"), split.get("data")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PayloadError(
            f"'dataframe_split.columns' must be a list of column names (strings); "
            f"got {_kind(names)}"
        )
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise PayloadError(f"'dataframe_split.columns' repeats {_quoted(repeated)}")
    if columns is not None:
        _check_names(names, [c.name for c in columns], "'dataframe_split.columns'")
    if not isinstance(data, list):
        raise PayloadError(
            f"'dataframe_split.data' must be a list of rows (lists); got {_kind(data)}"
        )
    if not data:
        raise PayloadError("'dataframe_split.data' is empty; send at least one row")
    for row, values in enumerate(data):
        if not isinstance(values, list):
            raise PayloadError(
                f"'dataframe_split.data' row {row} must be a list of values; "
                f"got {_kind(values)}"
            )
        if len(values) != len(names):
            raise PayloadError(
                f"'dataframe_split.data' row {row} has {len(values)} values "
                f"but there are {len(names)} columns"
            )
    return names, [list(column) for column in zip(*data, strict=True)]


def _check_names(given: list[str], expected: list[str], where: str) -> None:
    missing = [name for name in expected if name not in given]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        raise PayloadError(f"{where} is missing {noun} {_quoted(missing)}")
    extra = [name for name in given if name not in expected]
    if extra:
        noun = "column" if len(extra) == 1 else "columns"
        raise PayloadError(
            f"{where} has unknown {noun} {_quoted(extra)}; "
            f"GET /metadata lists the model's columns"
        )


def _convert(column: Column, values: list[Any]) -> Any:
    rule = _RULES.get(column.type)
    if rule is None:
        # A type our models do not use: leave it to MLflow's schema enforcement.
        return pd.Series(values, dtype=object)
    accepts, dtype, wanted = rule
    for row, value in enumerate(values):
        if not accepts(value):
            raise PayloadError(
                f"column '{column.name}' expects {wanted}; "
                f"got {_describe(value)} in row {row}"
            )
    if dtype in ("float64", "float32"):
        return np.array([np.nan if v is None else v for v in values], dtype=dtype)
    return pd.Series(values, dtype=dtype)


def _is_number(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isnan(value) or math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_string(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


# signature type -> (accepts a JSON value, pandas dtype, what the message asks for)
_RULES: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "double": (_is_number, "float64", "a finite number (double) or null"),
    "float": (_is_number, "float32", "a finite number (float) or null"),
    "long": (_is_integer, "int64", "an integer (long)"),
    "integer": (_is_integer, "int32", "an integer (integer)"),
    "boolean": (_is_boolean, "bool", "true or false (boolean)"),
    "string": (_is_string, "object", "a string or null"),
}


def _describe(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return repr(text)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity"
    if isinstance(value, list | dict):
        return _kind(value)
    return json.dumps(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _column_names(names: Sequence[str]) -> str:
    return f"{'column' if len(names) == 1 else 'columns'} {_quoted(names)}"


def _quoted(names: Sequence[str]) -> str:
    shown = ", ".join(f"'{name}'" for name in names[:5])
    more = len(names) - 5
    return shown + (f" and {more} more" if more > 0 else "")
