"""Request bodies turned into frames that MLflow's schema enforcement accepts."""

from __future__ import annotations

import numpy as np
import pytest

from serving.payload import Column, PayloadError, match_fitted, parse_payload

COLUMNS = (Column("age", "double"), Column("color", "string"), Column("n", "long"))


def test_records_become_a_frame_in_signature_order() -> None:
    frame = parse_payload({"inputs": [{"n": 3, "color": "red", "age": 30}]}, COLUMNS)

    assert list(frame.columns) == ["age", "color", "n"]
    assert frame["age"].dtype == np.float64 and frame["age"][0] == 30.0
    assert frame["n"].dtype == np.int64


def test_nulls_become_nan_in_numbers_and_stay_none_in_strings() -> None:
    frame = parse_payload({"inputs": [{"age": None, "color": None, "n": 1}]}, COLUMNS)

    assert np.isnan(frame["age"][0])
    assert frame["color"].dtype == object and frame["color"][0] is None


def test_split_and_records_give_the_same_frame() -> None:
    split = {"columns": ["n", "age", "color"], "data": [[1, 2.5, "x"]]}
    from_split = parse_payload({"dataframe_split": split}, COLUMNS)
    from_records = parse_payload(
        {"inputs": [{"n": 1, "age": 2.5, "color": "x"}]}, COLUMNS
    )

    assert from_split.equals(from_records)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "column 'n' expects an integer (long); got null in row 0"),
        (1.5, "column 'n' expects an integer (long); got 1.5 in row 0"),
        (True, "column 'n' expects an integer (long); got true in row 0"),
    ],
)
def test_integer_columns_refuse_nulls_fractions_and_booleans(
    value: object, message: str
) -> None:
    with pytest.raises(
        PayloadError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        parse_payload({"inputs": [{"age": 1, "color": "a", "n": value}]}, COLUMNS)


def test_long_text_is_shortened_in_the_message() -> None:
    with pytest.raises(PayloadError) as raised:
        parse_payload({"inputs": [{"age": "x" * 500, "color": "a", "n": 1}]}, COLUMNS)

    assert "got 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' in row 0" in str(
        raised.value
    )


def test_many_unknown_columns_are_summarized() -> None:
    row = {"age": 1, "color": "a", "n": 1} | {f"c{i}": 0 for i in range(8)}

    with pytest.raises(PayloadError) as raised:
        parse_payload({"inputs": [row]}, COLUMNS)

    assert "'c0', 'c1', 'c2', 'c3', 'c4' and 3 more" in str(raised.value)


def test_without_signature_any_columns_pass() -> None:
    frame = parse_payload({"inputs": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}, None)

    assert frame.to_dict(orient="list") == {"a": [1, 2], "b": ["x", "y"]}


FITTED = ("age", "color", "n")


def test_unsigned_frame_is_put_in_the_fitted_column_order() -> None:
    frame = parse_payload({"inputs": [{"n": 1, "age": 2, "color": "x"}]}, None)

    matched = match_fitted(frame, FITTED, 3)

    assert list(matched.columns) == ["age", "color", "n"]


@pytest.mark.parametrize(
    ("row", "names", "count", "message"),
    [
        (
            {"age": 1, "n": 1},
            FITTED,
            3,
            "it was fitted on columns 'age', 'color', 'n'; "
            "the input is missing column 'color'",
        ),
        (
            {"age": 1, "colour": "x", "n": 1, "m": 0},
            FITTED,
            3,
            "it was fitted on columns 'age', 'color', 'n'; the input is missing "
            "column 'color' and has unknown columns 'colour', 'm'",
        ),
        (
            {"a": 1},
            None,
            4,
            "it expects 4 columns (features) per row, as it was fitted; got 1: 'a'",
        ),
    ],
)
def test_columns_other_than_the_fitted_ones_are_refused_by_name(
    row: dict[str, object], names: tuple[str, ...] | None, count: int, message: str
) -> None:
    frame = parse_payload({"inputs": [row]}, None)

    with pytest.raises(PayloadError) as raised:
        match_fitted(frame, names, count)

    assert str(raised.value) == f"the model rejected the input: {message}"


def test_without_fitted_facts_the_frame_passes_as_is() -> None:
    frame = parse_payload({"inputs": [{"b": 1, "a": 2}]}, None)

    assert match_fitted(frame, None, None) is frame
