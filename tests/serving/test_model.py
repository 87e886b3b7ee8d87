"""Loading a version and predicting with it: what a model without signature
refuses is the caller's input, while other failures stay the server's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from serving.model import InputRejected, LoadedModel, load_model


class Failing(ClassifierMixin, BaseEstimator):
    """Fits like any classifier; its predict raises `error`."""

    def __init__(self, error: type[Exception] = RuntimeError) -> None:
        self.error = error

    def fit(self, x: Any, y: Any) -> Failing:
        self.classes_ = np.unique(y)
        return self

    def predict(self, x: Any) -> Any:
        raise self.error("predict broke")


def saved(
    tmp_path: Path, estimator: Any, signature: ModelSignature | None = None
) -> LoadedModel:
    path = tmp_path / "model"
    mlflow.sklearn.save_model(
        estimator,
        path,
        signature=signature,
        serialization_format="cloudpickle",  # Failing is a class of this module
        pip_requirements=["scikit-learn"],
    )
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    return load_model({"version": "1", "model_uri": str(path)}, downloads)


@pytest.fixture
def iris() -> tuple[pd.DataFrame, pd.Series]:
    return load_iris(return_X_y=True, as_frame=True)


def test_unsigned_model_keeps_the_columns_it_was_fitted_on(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, y = iris

    model = saved(tmp_path, LogisticRegression(max_iter=500).fit(x, y))

    assert (model.fitted_names, model.fitted_count) == (tuple(x.columns), 4)


def test_unsigned_model_fitted_on_an_array_keeps_only_their_number(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, y = iris

    model = saved(tmp_path, LogisticRegression(max_iter=500).fit(x.to_numpy(), y))

    assert (model.fitted_names, model.fitted_count) == (None, 4)


def test_unsigned_model_refusing_its_rows_raises_input_rejected(
    tmp_path: Path, iris: tuple[pd.DataFrame, pd.Series]
) -> None:
    x, y = iris
    model = saved(tmp_path, LogisticRegression(max_iter=500).fit(x, y))
    rows = x.head(1).astype(object).assign(**{str(x.columns[0]): "x"})

    with pytest.raises(InputRejected) as raised:
        model.predict(rows)

    assert str(raised.value) == "ValueError: could not convert string to float: 'x'"


@pytest.mark.parametrize(
    ("error", "signed", "raised"),
    [
        (RuntimeError, False, RuntimeError),  # not the input's fault
        (ValueError, True, ValueError),  # MLflow has checked the input already
        (ValueError, False, InputRejected),
    ],
)
def test_only_an_unsigned_models_input_errors_blame_the_input(
    tmp_path: Path,
    iris: tuple[pd.DataFrame, pd.Series],
    error: type[Exception],
    signed: bool,
    raised: type[Exception],
) -> None:
    x, y = iris
    signature = None
    if signed:
        signature = ModelSignature(Schema([ColSpec("double", c) for c in x.columns]))
    model = saved(tmp_path, Failing(error).fit(x, y), signature)

    with pytest.raises(raised, match="predict broke"):
        model.predict(x.head(2))
