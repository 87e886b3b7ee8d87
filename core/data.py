"""Datasets for training: scikit-learn's bundled sets and the user's own files.

A `Dataset` is a table of features plus one target column. `split_dataset` makes
the fixed, seeded train / test split; its test part is the "golden" set every
version trained on the same data is judged on, named by a digest of its content.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

from core.errors import DataError

logger = logging.getLogger(__name__)

BUILTIN_DATASETS: dict[str, Callable[..., object]] = {
    "breast_cancer": sk_datasets.load_breast_cancer,
    "wine": sk_datasets.load_wine,
    "iris": sk_datasets.load_iris,
}
FILE_SUFFIXES = (".csv", ".parquet", ".pq")
DEFAULT_TEST_SIZE = 0.25
DEFAULT_SEED = 42
MIN_ROWS = 10
# The column a built-in dataset's class labels are stored under.
BUILTIN_TARGET = "target"


@dataclass(frozen=True)
class Dataset:
    """A table of features and one target column, ready for training.

    Attributes:
        name: short name used in run names and tags (``wine``, ``churn``).
        source: where it came from (``sklearn:wine`` or an absolute file path).
        frame: the features with the target as the last column; numeric
            features are float64, the others strings with None for missing.
        target: name of the target column.
        dropped_rows: rows removed because their target was missing.
    """

    name: str
    source: str
    frame: pd.DataFrame
    target: str
    dropped_rows: int = 0

    @property
    def features(self) -> list[str]:
        """Feature column names, in file order."""
        return [c for c in self.frame.columns if c != self.target]

    @property
    def numeric_features(self) -> list[str]:
        """Feature columns treated as numbers (imputed with the median, scaled)."""
        return [c for c in self.features if pd.api.types.is_float_dtype(self.frame[c])]

    @property
    def categorical_features(self) -> list[str]:
        """Feature columns treated as categories (one-hot encoded)."""
        numeric = set(self.numeric_features)
        return [c for c in self.features if c not in numeric]

    @property
    def classes(self) -> list[str]:
        """The distinct target labels as strings, sorted."""
        return sorted(str(v) for v in self.frame[self.target].unique())


@dataclass(frozen=True)
class Split:
    """The seeded train / golden-test split of a dataset."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    golden_digest: str
    seed: int
    test_size: float

    @property
    def golden_frame(self) -> pd.DataFrame:
        """The golden set as one table: features plus the target column."""
        return self.x_test.assign(**{str(self.y_test.name): self.y_test})


def list_builtin() -> list[str]:
    """Names of the bundled scikit-learn datasets offered for training."""
    return sorted(BUILTIN_DATASETS)


def load_dataset(spec: str, target: str | None = None) -> Dataset:
    """Load a built-in dataset by name or a CSV/Parquet file by path.

    Args:
        spec: a name from `list_builtin()` or a path to a ``.csv``/``.parquet`` file.
        target: the target column; required for files. Built-ins predict their
            own ``target`` column, and naming another is an error.

    Raises:
        DataError: the name is unknown, or the file is unusable (see `load_file`).
    """
    if spec in BUILTIN_DATASETS:
        if target and target != BUILTIN_TARGET:
            raise DataError(
                f"{spec} is a built-in dataset whose labels are its "
                f"{BUILTIN_TARGET!r} column; drop --target {target} (it names a "
                "column of your own file)."
            )
        return load_builtin(spec)
    if Path(spec).suffix.lower() in FILE_SUFFIXES or Path(spec).exists():
        if not target:
            raise DataError(
                f"{spec} is a file; name its target column with --target "
                "(the column the model should predict)."
            )
        return load_file(spec, target)
    raise DataError(
        f"unknown dataset {spec!r}: use one of {', '.join(list_builtin())} "
        f"or a path to a {'/'.join(FILE_SUFFIXES)} file."
    )


def load_builtin(name: str) -> Dataset:
    """Load one of scikit-learn's bundled datasets, labels as class names."""
    loader = BUILTIN_DATASETS.get(name)
    if loader is None:
        raise DataError(
            f"unknown built-in dataset {name!r}; use one of "
            f"{', '.join(list_builtin())}."
        )
    bunch = loader(as_frame=True)
    features = bunch.data.astype("float64")  # type: ignore[attr-defined]
    names = list(bunch.target_names)  # type: ignore[attr-defined]
    labels = pd.Series([names[i] for i in bunch.target], name="target")  # type: ignore[attr-defined]
    frame = features.assign(**{BUILTIN_TARGET: labels.values})
    return _validated(
        Dataset(name=name, source=f"sklearn:{name}", frame=frame, target=BUILTIN_TARGET)
    )


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a frame, with messages that say what to fix.

    Raises:
        DataError: the file is missing, empty, of another type, or unreadable.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(
            f"{path.name}: unsupported file type {suffix or '(none)'!r}; "
            "use a .csv or .parquet file."
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file; check the path.")
    if path.stat().st_size == 0:
        raise DataError(f"{path.name} is empty; use a file with a header row and data.")
    try:
        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path.name} has no columns; use a file with a header row."
        ) from None
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        kind = "CSV" if suffix == ".csv" else "Parquet"
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"{path.name} could not be read as {kind} ({first_line}); "
            f"check that it is a valid {kind} file."
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    return frame


def load_file(path: str | Path, target: str) -> Dataset:
    """Load a user's CSV or Parquet file with `target` as the column to predict.

    Rows with a missing target are dropped (and counted); features keep their
    missing values, which the training pipeline imputes.

    Raises:
        DataError: unreadable or empty file, missing target column, a single
            class, a class too rare to split, or no feature columns.
    """
    frame = read_table(path)
    return dataset_from_frame(
        frame, target, name=Path(path).stem, source=str(Path(path).resolve())
    )


def dataset_from_frame(
    frame: pd.DataFrame, target: str, name: str, source: str
) -> Dataset:
    """Validate and normalise an in-memory table (e.g. an upload in the app)."""
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise DataError(
            f"{name} has no data rows; use a file with a header row "
            "and at least one row per class."
        )
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise DataError(
            f"{name} has no column {target!r}; its columns are: {shown}. "
            "Pick one of them as the target."
        )
    labels = frame[target]
    # An infinite label is no class: drop it like a missing one.
    missing_target = labels.isna() | (
        np.isinf(labels) if pd.api.types.is_float_dtype(labels) else False
    )
    dropped = int(missing_target.sum())
    if dropped == len(frame):
        raise DataError(
            f"{name}: every row's target {target!r} is empty; "
            "pick the column that holds the labels."
        )
    if dropped:
        logger.warning(
            "Dropped %d rows of %s whose target %r is missing", dropped, name, target
        )
        frame = frame.loc[~missing_target]
    features = [c for c in frame.columns if c != target]
    if not features:
        raise DataError(
            f"{name} has only the target column {target!r}; "
            "it needs at least one feature column."
        )
    normalised = (
        pd.DataFrame(
            {c: normalise_column(frame[c]) for c in features}, index=frame.index
        )
        .assign(**{target: _normalise_target(frame[target])})
        .reset_index(drop=True)
    )
    return _validated(
        Dataset(
            name=name,
            source=source,
            frame=normalised,
            target=target,
            dropped_rows=dropped,
        )
    )


def normalise_column(column: pd.Series) -> pd.Series:
    """Numbers (and booleans) become float64; everything else strings, missing NaN.

    Float64 for every number keeps the model signature simple (``double``) and
    lets a missing value arrive as NaN at inference, which an integer column's
    ``long`` type would reject. Missing categoricals stay NaN (not None) because
    scikit-learn's imputers detect NaN in object columns but not None.
    """
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
        numbers = column.astype("float64")
        # scikit-learn refuses infinity outright; an overflowed cell is as good as
        # missing, and the pipeline imputes missing values.
        infinite = np.isinf(numbers)
        if infinite.any():
            logger.warning(
                "Column %r has %d infinite values; treating them as missing",
                column.name,
                int(infinite.sum()),
            )
            numbers = numbers.mask(infinite)
        return numbers
    as_text = column.astype("object").where(column.notna(), None)
    return as_text.map(lambda v: v if v is None else str(v)).astype("object")


def prepare_features(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> pd.DataFrame:
    """Coerce a frame to the training column types (for gates, smoke and drift)."""
    out = pd.DataFrame(index=frame.index)
    for column in numeric:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in categorical:
        values = frame[column].astype("object")
        out[column] = values.where(values.notna(), None).map(
            lambda v: v if v is None else str(v)
        )
    return out[[c for c in frame.columns if c in out.columns]]


def _normalise_target(column: pd.Series) -> pd.Series:
    # Integral floats such as 1.0 come from CSVs with missing labels; show them as 1.
    if pd.api.types.is_float_dtype(column) and bool(
        np.all(np.mod(column.to_numpy(), 1) == 0)
    ):
        return column.astype("int64")
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return column
    return column.astype("str")


def _validated(dataset: Dataset) -> Dataset:
    counts = dataset.frame[dataset.target].value_counts()
    if len(counts) < 2:
        raise DataError(
            f"{dataset.name}: target {dataset.target!r} has a single "
            f"class ({str(counts.index[0])!r}); a classifier needs at least two."
        )
    if len(dataset.frame) < MIN_ROWS:
        raise DataError(
            f"{dataset.name} has {len(dataset.frame)} usable rows; "
            f"use at least {MIN_ROWS}."
        )
    rare = counts[counts < 2]
    if not rare.empty:
        raise DataError(
            f"{dataset.name}: class {str(rare.index[0])!r} of {dataset.target!r} has a "
            "single row; the stratified split needs at least 2 rows per class. "
            "Remove or merge that class."
        )
    return dataset


def split_dataset(
    dataset: Dataset, test_size: float = DEFAULT_TEST_SIZE, seed: int = DEFAULT_SEED
) -> Split:
    """Split into train and golden test parts, stratified and seeded.

    Raises:
        DataError: `test_size` is out of range or leaves a class without rows.
    """
    if not 0.05 <= test_size <= 0.5:
        raise DataError(f"test size {test_size} is out of range; use 0.05 to 0.5.")
    x = dataset.frame[dataset.features]
    y = dataset.frame[dataset.target]
    try:
        x_train, x_test, y_train, y_test = train_test_split(
            x, y, test_size=test_size, random_state=seed, stratify=y
        )
    except ValueError as exc:
        raise DataError(
            f"{dataset.name} cannot be split with test size {test_size}: "
            f"{exc}. Use more rows or a larger test size."
        ) from None
    return Split(
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        golden_digest=frame_digest(x_test.assign(**{dataset.target: y_test})),
        seed=seed,
        test_size=test_size,
    )


def frame_digest(frame: pd.DataFrame) -> str:
    """A content digest of a table: same rows, columns and values, same digest."""
    hasher = hashlib.sha256()
    hasher.update("\x1f".join(map(str, frame.columns)).encode())
    hasher.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return hasher.hexdigest()[:16]
