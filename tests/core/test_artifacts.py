"""Loading what a version is made of: its fitted pipeline and its golden set."""

from __future__ import annotations

import pytest
from sklearn.pipeline import Pipeline

from core import artifacts
from core.config import Settings
from core.data import frame_digest
from core.errors import GateError
from tests.conftest import Trained

pytestmark = pytest.mark.integration


def test_a_version_loads_as_its_fitted_pipeline(trained: Trained) -> None:
    model = artifacts.load_model(trained.settings, "1")

    assert isinstance(model, Pipeline)
    assert list(model.classes_) == ["benign", "malignant"]


def test_the_golden_set_comes_back_typed_as_at_training(trained: Trained) -> None:
    golden = artifacts.load_golden(trained.settings, trained.run_id("1"))
    loaded = artifacts.golden_xy(trained.settings, trained.run_id("1"))

    assert golden is not None and loaded is not None
    x, y = loaded
    assert frame_digest(golden) == trained.results[0].golden_digest
    assert len(x) == len(y) == 143
    assert {str(dtype) for dtype in x.dtypes} == {"float64"}


def test_a_foreign_run_has_no_golden_set(
    model_settings: Settings, foreign_version: str
) -> None:
    from core.registry import get_version

    run_id = get_version(model_settings, foreign_version).run_id

    assert artifacts.load_golden(model_settings, run_id) is None
    assert artifacts.golden_xy(model_settings, run_id) is None


def test_a_missing_version_cannot_be_loaded(trained: Trained) -> None:
    with pytest.raises(GateError) as raised:
        artifacts.load_model(trained.settings, "99")

    assert str(raised.value).startswith(
        "cannot load models:/studio-classifier/99 as a scikit-learn model: "
    )
