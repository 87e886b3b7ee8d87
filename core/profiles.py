"""Compact feature profiles of a table, and drift between them as PSI.

Training logs a profile of its training data (`PROFILE_ARTIFACT`); the gate's
drift check compares two versions' profiles, and the same functions compare a
profile with a frame of live traffic. A profile keeps, per numeric feature,
quantile cut points with the share of rows between them, and per categorical
feature the shares of its most frequent categories plus an "other" bucket;
missing values get a bucket of their own in both. Numeric features also keep
their percentiles, so that another profile can be re-binned onto these bins
closely (see `NumericProfile.shares_of`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.errors import DataError

logger = logging.getLogger(__name__)

PROFILE_ARTIFACT = "profile/train_profile.json"
PROFILE_FORMAT = 1
DEFAULT_BINS = 10
DEFAULT_MAX_CATEGORIES = 20
PERCENTILES = np.linspace(0.0, 1.0, 101)
# A bucket empty on one side would make PSI infinite; flooring proportions is
# the usual remedy, and 1e-4 keeps one empty bucket's share of PSI below ~1.
_FLOOR = 1e-4


@dataclass(frozen=True)
class NumericProfile:
    """A numeric feature: right-closed bins between quantile cut points.

    Bin 0 holds values <= ``cuts[0]``, bin i values in ``(cuts[i-1], cuts[i]]``
    and the last bin values > ``cuts[-1]``; ``proportions`` are shares of the
    non-missing values, ``missing`` the share of missing (or infinite) ones,
    and ``percentiles`` the 0th to 100th percentile of the non-missing values
    (empty when there are none).
    """

    cuts: tuple[float, ...]
    proportions: tuple[float, ...]
    percentiles: tuple[float, ...]
    missing: float

    kind = "numeric"

    def shares(self, values: pd.Series) -> np.ndarray:
        """Shares of `values` in this profile's bins, then the missing share."""
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
        finite = numbers[np.isfinite(numbers)]
        counts = np.bincount(
            np.searchsorted(np.asarray(self.cuts), finite, side="left"),
            minlength=len(self.cuts) + 1,
        )
        return _with_missing(counts, len(numbers) - len(finite))

    def shares_of(self, other: FeatureProfile) -> np.ndarray:
        """Shares of `other`'s values in this profile's bins, then missing.

        Exact where `other` has a cut point; elsewhere read from its
        percentiles, values taken as spread evenly between two of them, which
        is off by at most about 1% of rows per bin.

        Raises:
            DataError: `other` profiles a categorical feature.
        """
        if not isinstance(other, NumericProfile):
            raise DataError("cannot compare a numeric feature with a categorical one.")
        if not other.percentiles:
            return _with_missing(np.zeros(len(self.cuts) + 1), 1)
        at_cuts = _cdf(other, np.asarray(self.cuts, dtype="float64"))
        inside = np.diff(np.concatenate([[0.0], at_cuts, [1.0]]))
        present = 1.0 - other.missing
        return np.append(np.clip(inside, 0.0, None) * present, other.missing)

    def expected(self) -> np.ndarray:
        """This profile's own shares, in the layout of `shares`."""
        present = 1.0 - self.missing
        if not self.proportions:
            return np.append(np.zeros(len(self.cuts) + 1), 1.0)
        return np.append(np.asarray(self.proportions) * present, self.missing)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "kind": self.kind,
            "cuts": list(self.cuts),
            "proportions": list(self.proportions),
            "percentiles": list(self.percentiles),
            "missing": self.missing,
        }


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical feature: shares of its top categories, the rest, missing."""

    frequencies: Mapping[str, float]
    other: float
    missing: float

    kind = "categorical"

    def shares(self, values: pd.Series) -> np.ndarray:
        """Shares of `values` per known category, then other, then missing."""
        present = values[values.notna()].astype(str)
        counts = present.value_counts()
        known = [int(counts.get(c, 0)) for c in self.frequencies]
        rest = len(present) - sum(known)
        return _with_missing(np.array([*known, rest]), len(values) - len(present))

    def shares_of(self, other: FeatureProfile) -> np.ndarray:
        """Shares of `other`'s values in this profile's buckets.

        Categories `other` lumped into its "other" bucket cannot be told
        apart, so they all land in this profile's "other" bucket.

        Raises:
            DataError: `other` profiles a numeric feature.
        """
        if not isinstance(other, CategoricalProfile):
            raise DataError("cannot compare a categorical feature with a numeric one.")
        known = [float(other.frequencies.get(c, 0.0)) for c in self.frequencies]
        rest = max(0.0, 1.0 - sum(known) - other.missing)
        return np.array([*known, rest, other.missing])

    def expected(self) -> np.ndarray:
        """This profile's own shares, in the layout of `shares`."""
        return np.array([*self.frequencies.values(), self.other, self.missing])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "kind": self.kind,
            "frequencies": dict(self.frequencies),
            "other": self.other,
            "missing": self.missing,
        }


FeatureProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class Profile:
    """Per-feature distributions of a table, small enough to log as JSON."""

    features: Mapping[str, FeatureProfile]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON document `from_dict` reads back."""
        return {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "features": {name: f.to_dict() for name, f in self.features.items()},
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Profile:
        """Read a profile written by `to_dict`.

        Raises:
            DataError: the document is not a profile of a format we read.
        """
        if not isinstance(document, Mapping):
            raise DataError("a feature profile must be a JSON object.")
        if document.get("format") != PROFILE_FORMAT:
            raise DataError(
                f"feature profile format {document.get('format')!r} is not "
                f"supported; this version reads format {PROFILE_FORMAT}."
            )
        raw = document.get("features")
        if not isinstance(raw, Mapping):
            raise DataError("a feature profile needs a 'features' object.")
        try:
            features = {str(n): _feature_from_dict(f) for n, f in raw.items()}
            return cls(features=features, rows=int(document.get("rows", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed feature profile: {exc!r}.") from None


@dataclass(frozen=True)
class Drift:
    """PSI per feature between a reference and a current distribution.

    Attributes:
        psi: feature -> population stability index, for features both sides
            have with the same kind.
        only_reference: features the current side lacks.
        only_current: features the reference side lacks.
        kind_changed: features numeric on one side and categorical on the other.
    """

    psi: Mapping[str, float]
    only_reference: tuple[str, ...] = ()
    only_current: tuple[str, ...] = ()
    kind_changed: tuple[str, ...] = ()

    @property
    def worst(self) -> tuple[str, float] | None:
        """The feature with the largest PSI and that PSI, or None."""
        if not self.psi:
            return None
        name = max(self.psi, key=lambda n: self.psi[n])
        return name, self.psi[name]


def profile_frame(
    frame: pd.DataFrame,
    bins: int = DEFAULT_BINS,
    max_categories: int = DEFAULT_MAX_CATEGORIES,
    numeric: Iterable[str] | None = None,
) -> Profile:
    """Profile every column of `frame`.

    Args:
        frame: the table (features only; drop the target first if unwanted).
        bins: quantile bins per numeric feature (fewer when values repeat).
        max_categories: categories kept per categorical feature; rarer ones
            are pooled as "other".
        numeric: columns to treat as numbers; by default those of numeric dtype.

    Raises:
        DataError: `bins` or `max_categories` below 1.
    """
    if bins < 1 or max_categories < 1:
        raise DataError(
            f"profile bins={bins} and max_categories={max_categories} must be "
            "at least 1."
        )
    as_numbers = (
        set(numeric)
        if numeric is not None
        else {
            c
            for c in frame.columns
            if pd.api.types.is_numeric_dtype(frame[c])
            or pd.api.types.is_bool_dtype(frame[c])
        }
    )
    features: dict[str, FeatureProfile] = {}
    for column in frame.columns:
        if column in as_numbers:
            features[str(column)] = _profile_numeric(frame[column], bins)
        else:
            features[str(column)] = _profile_categorical(frame[column], max_categories)
    return Profile(features=features, rows=len(frame))


def drift(reference: Profile, current: Profile | pd.DataFrame) -> Drift:
    """PSI of each shared feature between `reference` and `current`.

    A frame is binned exactly with the reference's bins; another profile is
    mapped onto them approximately (see `NumericProfile.shares_of`).
    """
    names = (
        [str(c) for c in current.columns]
        if isinstance(current, pd.DataFrame)
        else list(current.features)
    )
    psi: dict[str, float] = {}
    kind_changed: list[str] = []
    for name, ref in reference.features.items():
        if name not in names:
            continue
        if isinstance(current, pd.DataFrame):
            observed = ref.shares(current[name])
        else:
            other = current.features[name]
            if other.kind != ref.kind:
                kind_changed.append(name)
                continue
            observed = ref.shares_of(other)
        psi[name] = population_stability_index(ref.expected(), observed)
    return Drift(
        psi=psi,
        only_reference=tuple(n for n in reference.features if n not in names),
        only_current=tuple(n for n in names if n not in reference.features),
        kind_changed=tuple(kind_changed),
    )


def population_stability_index(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray
) -> float:
    """PSI = sum((a - e) * ln(a / e)) over buckets, shares floored at 1e-4.

    By convention below 0.1 means no real shift, 0.1 to 0.25 a moderate one and
    above 0.25 a shift worth acting on.
    """
    e = np.clip(np.asarray(expected, dtype="float64"), _FLOOR, None)
    a = np.clip(np.asarray(actual, dtype="float64"), _FLOOR, None)
    if e.shape != a.shape:
        raise ValueError(f"bucket counts differ: {e.shape} vs {a.shape}")
    # Rounded so identical distributions read 0, not floating-point dust.
    return round(float(np.sum((a - e) * np.log(a / e))), 12)


def _profile_numeric(column: pd.Series, bins: int) -> NumericProfile:
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64")
    finite = numbers[np.isfinite(numbers)]
    missing = 1.0 - len(finite) / len(numbers) if len(numbers) else 0.0
    if not len(finite):
        return NumericProfile((), (), (), missing)
    quantiles = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    cuts = tuple(float(q) for q in np.unique(quantiles))
    counts = np.bincount(
        np.searchsorted(np.asarray(cuts), finite, side="left"),
        minlength=len(cuts) + 1,
    )
    return NumericProfile(
        cuts=cuts,
        proportions=tuple(float(c) for c in counts / counts.sum()),
        # inverted_cdf returns observed values, at which the share of values
        # <= the percentile is at least its rank, as `_cdf` assumes.
        percentiles=tuple(
            float(q) for q in np.quantile(finite, PERCENTILES, method="inverted_cdf")
        ),
        missing=missing,
    )


def _profile_categorical(column: pd.Series, max_categories: int) -> CategoricalProfile:
    total = len(column)
    present = column[column.notna()].astype(str)
    if not total:
        return CategoricalProfile({}, 0.0, 0.0)
    # Ties broken by name so the same data always keeps the same categories.
    counts = sorted(present.value_counts().items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(counts[:max_categories])
    return CategoricalProfile(
        frequencies={str(k): v / total for k, v in kept.items()},
        other=(len(present) - sum(kept.values())) / total,
        missing=(total - len(present)) / total,
    )


def _feature_from_dict(raw: Mapping[str, Any]) -> FeatureProfile:
    kind = raw["kind"]
    if kind == NumericProfile.kind:
        cuts = tuple(float(c) for c in raw["cuts"])
        proportions = tuple(float(p) for p in raw["proportions"])
        percentiles = tuple(float(q) for q in raw["percentiles"])
        if proportions and len(proportions) != len(cuts) + 1:
            raise ValueError("a numeric profile needs one more proportion than cuts")
        if len(percentiles) == 1 or bool(proportions) != bool(percentiles):
            raise ValueError("a numeric profile needs percentiles with proportions")
        return NumericProfile(
            cuts=cuts,
            proportions=proportions,
            percentiles=percentiles,
            missing=float(raw["missing"]),
        )
    if kind == CategoricalProfile.kind:
        return CategoricalProfile(
            frequencies={str(k): float(v) for k, v in raw["frequencies"].items()},
            other=float(raw["other"]),
            missing=float(raw["missing"]),
        )
    raise ValueError(f"unknown feature kind {kind!r}")


def _with_missing(counts: np.ndarray, missing: int) -> np.ndarray:
    total = float(counts.sum()) + missing
    if total == 0:
        return np.zeros(len(counts) + 1)
    return np.append(counts / total, missing / total)


def _cdf(profile: NumericProfile, t: np.ndarray) -> np.ndarray:
    """Share of present values <= t, linear between the points a profile knows.

    The share is exact at the profile's cuts; at a percentile its rank is a
    lower bound, so the larger known share wins at any point.
    """
    points = np.concatenate([profile.percentiles, profile.cuts])
    shares = np.concatenate(
        [
            np.linspace(0.0, 1.0, len(profile.percentiles)),
            np.cumsum(profile.proportions)[:-1],
        ]
    )
    order = np.lexsort((shares, points))
    points, shares = points[order], np.maximum.accumulate(shares[order])
    # A repeated value (a point mass) keeps its largest share, as a
    # right-continuous CDF does at a jump.
    keep = np.append(points[1:] != points[:-1], True)
    return np.asarray(np.interp(t, points[keep], shares[keep], left=0.0, right=1.0))
