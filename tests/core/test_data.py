"""Datasets: built-ins, the user's CSV and Parquet files, the seeded golden split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data import (
    dataset_from_frame,
    frame_digest,
    list_builtin,
    load_dataset,
    prepare_features,
    split_dataset,
)
from core.errors import DataError


def mixed_frame(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    """Numbers, a categorical column, missing values and string labels."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "income": rng.normal(50_000, 10_000, rows).round(2),
            "plan": rng.choice(["basic", "plus", "pro"], rows),
            "churned": rng.choice(["yes", "no"], rows),
        }
    )
    frame.loc[::7, "income"] = np.nan
    frame.loc[::9, "plan"] = None
    return frame


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_builtins_are_offered_by_name() -> None:
    assert list_builtin() == ["breast_cancer", "iris", "wine"]


def test_builtin_labels_are_class_names_and_features_numbers() -> None:
    dataset = load_dataset("iris")

    assert dataset.classes == ["setosa", "versicolor", "virginica"]
    assert dataset.categorical_features == []
    assert len(dataset.numeric_features) == 4
    assert dataset.source == "sklearn:iris"


def test_csv_with_categoricals_nan_and_string_labels(tmp_path: Path) -> None:
    dataset = load_dataset(
        str(write_csv(tmp_path / "churn.csv", mixed_frame())), "churned"
    )

    assert dataset.numeric_features == ["age", "income"]
    assert dataset.categorical_features == ["plan"]
    assert dataset.classes == ["no", "yes"]
    assert dataset.frame["income"].isna().sum() == 9
    assert dataset.frame["plan"].isna().sum() == 7
    assert dataset.frame["age"].dtype == "float64"  # whole numbers may be NaN later


def test_rows_without_a_target_are_dropped_and_counted(tmp_path: Path) -> None:
    frame = mixed_frame()
    frame.loc[[1, 2, 3], "churned"] = None

    dataset = load_dataset(str(write_csv(tmp_path / "c.csv", frame)), "churned")

    assert dataset.dropped_rows == 3
    assert len(dataset.frame) == 57


def test_integral_float_labels_read_as_whole_numbers(tmp_path: Path) -> None:
    frame = mixed_frame().assign(churned=[1, 0] * 30)
    frame.loc[0, "churned"] = None  # makes the column float in the CSV reader

    dataset = load_dataset(str(write_csv(tmp_path / "c.csv", frame)), "churned")

    assert dataset.frame["churned"].dtype == "int64"
    assert dataset.classes == ["0", "1"]


def test_parquet_categorical_dtype_becomes_a_categorical_feature(
    tmp_path: Path,
) -> None:
    frame = mixed_frame().astype({"plan": "category"})
    path = tmp_path / "churn.parquet"
    frame.to_parquet(path)

    dataset = load_dataset(str(path), "churned")

    assert dataset.categorical_features == ["plan"]
    assert set(dataset.frame["plan"].dropna()) == {"basic", "plus", "pro"}


def test_an_in_memory_table_is_validated_like_a_file() -> None:
    dataset = dataset_from_frame(mixed_frame(), "churned", "upload", "upload.csv")

    assert dataset.name == "upload"
    assert dataset.features == ["age", "income", "plan"]


def test_infinite_numbers_count_as_missing(tmp_path: Path) -> None:
    rows = "\n".join(
        f"{i if i % 4 else 'inf'},{'yes' if i % 2 else 'no'}" for i in range(40)
    )
    path = tmp_path / "overflow.csv"
    path.write_text("x,label\n" + rows + "\n")

    dataset = load_dataset(str(path), "label")

    assert int(dataset.frame["x"].isna().sum()) == 10
    assert not np.isinf(dataset.frame["x"].dropna()).any()


def test_an_infinite_label_is_dropped_like_a_missing_one(tmp_path: Path) -> None:
    labels = ["inf" if i == 0 else str(i % 2) for i in range(30)]
    path = tmp_path / "labels.csv"
    path.write_text("x,y\n" + "\n".join(f"{i},{v}" for i, v in enumerate(labels)))

    dataset = load_dataset(str(path), "y")

    assert dataset.dropped_rows == 1
    assert sorted(dataset.frame["y"].unique()) == [0, 1]


def test_a_target_for_a_builtin_is_refused_not_ignored() -> None:
    with pytest.raises(DataError, match="drop --target species"):
        load_dataset("iris", "species")
    assert load_dataset("iris", "target").target == "target"


BAD_FILES = [
    # (file name, content, target, message)
    (
        "churn.csv",
        "a,b\n" + "1,2\n" * 12,
        "churned",
        "churn has no column 'churned'; its columns are: a, b. Pick one of them "
        "as the target.",
    ),
    (
        "one.csv",
        "a,y\n" + "".join(f"{i},same\n" for i in range(12)),
        "y",
        "one: target 'y' has a single class ('same'); a classifier needs at least two.",
    ),
    (
        "ones.csv",
        "a,y\n" + "".join(f"{i},1\n" for i in range(12)),
        "y",
        "ones: target 'y' has a single class ('1'); a classifier needs at least two.",
    ),
    (
        "empty.csv",
        "",
        "y",
        "empty.csv is empty; use a file with a header row and data.",
    ),
    (
        "blank.csv",
        "\n\n",
        "y",
        "blank.csv has no columns; use a file with a header row.",
    ),
    (
        "header.csv",
        "a,y\n",
        "y",
        "header has no data rows; use a file with a header row and at least one "
        "row per class.",
    ),
    (
        "ragged.csv",
        "a,y\n1,2\n3,4,5,6\n",
        "y",
        "ragged.csv could not be read as CSV (Error tokenizing data. C error: "
        "Expected 2 fields in line 3, saw 4); check that it is a valid CSV file.",
    ),
    (
        "fake.parquet",
        "a,y\n1,2\n",
        "y",
        "fake.parquet could not be read as Parquet (Could not open Parquet input "
        "source '{dir}/fake.parquet': Parquet magic bytes not found in footer. "
        "Either the file is corrupted or this is not a parquet file.); check that "
        "it is a valid Parquet file.",
    ),
    (
        "data.txt",
        "a,y\n1,2\n",
        "y",
        "data.txt: unsupported file type '.txt'; use a .csv or .parquet file.",
    ),
    (
        "only.csv",
        "y\n" + "0\n1\n" * 6,
        "y",
        "only has only the target column 'y'; it needs at least one feature column.",
    ),
    (
        "few.csv",
        "a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(6)),
        "y",
        "few has 6 usable rows; use at least 10.",
    ),
    (
        "rare.csv",
        "a,y\n" + "".join(f"{i},{int(i == 11)}\n" for i in range(12)),
        "y",
        "rare: class '1' of 'y' has a single row; the stratified split needs at "
        "least 2 rows per class. Remove or merge that class.",
    ),
    (
        "unlabelled.csv",
        "a,y\n" + "".join(f"{i},\n" for i in range(12)),
        "y",
        "unlabelled: every row's target 'y' is empty; pick the column that holds "
        "the labels.",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "target", "message"),
    BAD_FILES,
    ids=[case[0] for case in BAD_FILES],
)
def test_unusable_files_are_refused_with_the_fix(
    tmp_path: Path, name: str, content: str, target: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)

    with pytest.raises(DataError) as raised:
        load_dataset(str(path), target)

    assert str(raised.value) == message.format(dir=tmp_path)


def test_binary_garbage_is_refused_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 20)

    with pytest.raises(DataError, match=r"^garbage.csv could not be read as CSV"):
        load_dataset(str(path), "y")


@pytest.mark.parametrize(
    ("spec", "target", "message"),
    [
        (
            "mnist",
            None,
            "unknown dataset 'mnist': use one of breast_cancer, iris, wine or a path "
            "to a .csv/.parquet/.pq file.",
        ),
        ("{dir}/missing.csv", "y", "{dir}/missing.csv: no such file; check the path."),
        (
            "{dir}/churn.csv",
            None,
            "{dir}/churn.csv is a file; name its target column with --target (the "
            "column the model should predict).",
        ),
    ],
)
def test_unknown_specs_are_refused_with_the_fix(
    tmp_path: Path, spec: str, target: str | None, message: str
) -> None:
    with pytest.raises(DataError) as raised:
        load_dataset(spec.format(dir=tmp_path), target)

    assert str(raised.value) == message.format(dir=tmp_path)


def test_split_is_stratified_and_seeded() -> None:
    dataset = load_dataset("breast_cancer")

    first, again = split_dataset(dataset, seed=42), split_dataset(dataset, seed=42)

    assert first.golden_digest == again.golden_digest
    assert list(first.x_test.index) == list(again.x_test.index)
    assert len(first.x_test) == 143
    shares = first.y_test.value_counts(normalize=True).round(2)
    assert (
        shares.to_dict()
        == dataset.frame["target"].value_counts(normalize=True).round(2).to_dict()
    )


def test_another_seed_or_size_gives_another_golden_set() -> None:
    dataset = load_dataset("breast_cancer")
    digest = split_dataset(dataset, seed=42).golden_digest

    assert split_dataset(dataset, seed=7).golden_digest != digest
    assert split_dataset(dataset, test_size=0.3, seed=42).golden_digest != digest


def test_golden_frame_holds_features_and_target() -> None:
    split = split_dataset(load_dataset("wine"))

    assert list(split.golden_frame.columns)[-1] == "target"
    assert frame_digest(split.golden_frame) == split.golden_digest


@pytest.mark.parametrize("test_size", [0.0, 0.01, 0.51, 0.9])
def test_test_size_out_of_range_is_refused(test_size: float) -> None:
    with pytest.raises(DataError) as raised:
        split_dataset(load_dataset("iris"), test_size=test_size)

    assert str(raised.value) == (
        f"test size {test_size} is out of range; use 0.05 to 0.5."
    )


def test_frame_digest_follows_content_only() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})

    assert frame_digest(frame) == frame_digest(frame.copy().set_index([["p", "q"]]))
    assert frame_digest(frame) != frame_digest(frame.assign(a=[1.0, 2.5]))


def test_prepare_features_coerces_to_training_types() -> None:
    raw = pd.DataFrame({"age": ["41", None, "x"], "plan": [3, None, "pro"]})

    prepared = prepare_features(raw, numeric=["age"], categorical=["plan"])

    assert prepared["age"].tolist()[0] == 41.0
    assert prepared["age"].isna().tolist() == [False, True, True]
    assert prepared["plan"].isna().tolist() == [False, True, False]
    assert prepared["plan"].dropna().tolist() == ["3", "pro"]
