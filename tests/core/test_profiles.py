"""Feature profiles and PSI: identical data reads ~0, shifted data reads large."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from core import artifacts
from core.errors import DataError
from core.profiles import (
    CategoricalProfile,
    NumericProfile,
    Profile,
    drift,
    population_stability_index,
    profile_frame,
)


def sample(seed: int, shift: float = 0.0, rows: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "size": rng.normal(10.0 + shift, 2.0, rows),
            "count": rng.poisson(3, rows).astype("float64"),
            "colour": rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def test_identical_data_has_zero_psi() -> None:
    frame = sample(0)
    profile = profile_frame(frame)

    assert max(drift(profile, frame).psi.values()) == 0.0
    assert max(drift(profile, profile).psi.values()) == 0.0


def test_another_sample_of_the_same_distribution_has_small_psi() -> None:
    report = drift(profile_frame(sample(0)), sample(1))

    assert max(report.psi.values()) < 0.02


def test_shifted_feature_has_large_psi_and_is_the_worst() -> None:
    report = drift(profile_frame(sample(0)), profile_frame(sample(1, shift=2.0)))

    assert report.worst is not None
    assert report.worst[0] == "size"
    assert report.worst[1] > 0.25
    assert report.psi["colour"] < 0.02


def test_profile_to_profile_psi_approximates_profile_to_frame() -> None:
    reference = profile_frame(sample(0))
    shifted = sample(1, shift=1.0)

    exact = drift(reference, shifted).psi["size"]
    approximate = drift(reference, profile_frame(shifted)).psi["size"]

    assert approximate == pytest.approx(exact, rel=0.02)


def test_new_category_counts_as_other() -> None:
    reference = profile_frame(pd.DataFrame({"colour": ["red", "blue"] * 50}))
    current = pd.DataFrame({"colour": ["red", "purple"] * 50})

    assert drift(reference, current).psi["colour"] > 1.0


def test_missing_values_have_their_own_bucket() -> None:
    reference = profile_frame(sample(0))
    current = sample(0).assign(size=lambda f: f["size"].where(f.index % 2 == 0))

    assert reference.features["size"].missing == 0.0
    assert drift(reference, current).psi["size"] > 1.0


def test_rare_categories_pool_into_other() -> None:
    frame = pd.DataFrame({"city": ["a"] * 50 + ["b"] * 30 + ["c"] * 15 + ["d"] * 5})

    profile = profile_frame(frame, max_categories=2).features["city"]

    assert profile == CategoricalProfile({"a": 0.5, "b": 0.3}, other=0.2, missing=0.0)


def test_constant_and_empty_columns_are_profiled() -> None:
    frame = pd.DataFrame({"flat": [1.0] * 10, "empty": [math.nan] * 10})

    profile = profile_frame(frame)

    assert profile.features["flat"] == NumericProfile(
        (1.0,), (1.0, 0.0), (1.0,) * 101, 0
    )
    assert profile.features["empty"].missing == 1.0
    assert drift(profile, profile).psi == {"flat": 0.0, "empty": 0.0}


def test_features_on_one_side_or_of_another_kind_are_reported() -> None:
    reference = profile_frame(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}))
    current = profile_frame(pd.DataFrame({"b": [1.0, 2.0], "c": [3.0, 4.0]}))

    report = drift(reference, current)

    assert (report.psi, report.only_reference, report.only_current) == (
        {},
        ("a",),
        ("c",),
    )
    assert report.kind_changed == ("b",)
    assert report.worst is None


def test_profile_survives_a_json_round_trip() -> None:
    profile = profile_frame(sample(0).assign(note=[None, "x"] * 1000))

    document = json.loads(json.dumps(profile.to_dict()))

    assert Profile.from_dict(document) == profile


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"format": 99, "features": {}}, "feature profile format 99 is not supported"),
        ({"format": 1}, "a feature profile needs a 'features' object."),
        ({"format": 1, "features": {"a": {"kind": "image"}}}, "malformed feature"),
    ],
)
def test_malformed_profiles_are_refused(document: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Profile.from_dict(document)


def test_psi_matches_the_formula() -> None:
    expected = 0.4 * math.log(0.9 / 0.5) + -0.4 * math.log(0.1 / 0.5)

    assert population_stability_index([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)


def test_training_logs_a_profile_of_its_training_data(trained) -> None:
    result = trained.results[0]

    profile = artifacts.load_profile(trained.settings, result.run_id)

    assert profile is not None
    assert len(profile.features) == 30
    assert profile.rows == 426
    assert all(isinstance(f, NumericProfile) for f in profile.features.values())
