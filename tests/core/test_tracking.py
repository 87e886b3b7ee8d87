"""Access to the tracking store: experiments, the fluent API, error wrapping."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from core.config import Settings, load_settings
from core.tracking import client_for, ensure_experiment, fluent, unreachable


@pytest.mark.integration
def test_experiments_keep_artifacts_under_the_artifact_root(
    settings: Settings,
) -> None:
    experiment_id = ensure_experiment(settings, "demo")

    experiment = client_for(settings).get_experiment(experiment_id)
    assert experiment.artifact_location == (settings.artifact_root / "demo").as_uri()
    assert ensure_experiment(settings, "demo") == experiment_id


@pytest.mark.integration
def test_a_deleted_experiment_is_restored(settings: Settings) -> None:
    experiment_id = ensure_experiment(settings, "demo")
    client_for(settings).delete_experiment(experiment_id)

    assert ensure_experiment(settings, "demo") == experiment_id
    assert client_for(settings).get_experiment(experiment_id).lifecycle_stage == (
        "active"
    )


@pytest.mark.integration
def test_fluent_points_mlflow_at_the_store_and_back(settings: Settings) -> None:
    before = mlflow.get_tracking_uri()

    with fluent(settings):
        assert mlflow.get_tracking_uri() == settings.tracking_uri

    assert mlflow.get_tracking_uri() == before


def test_unreachable_names_the_store_without_credentials(tmp_path) -> None:
    settings = load_settings(
        {
            "STUDIO_HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": "https://ann:pw-5e1d@mlflow.example/",
        }
    )
    failure = MlflowException(
        "API request to https://ann:pw-5e1d@mlflow.example/api/2.0/x failed\nmore"
    )

    assert str(unreachable(settings, failure)) == (
        "MLflow at https://***@mlflow.example/ failed: API request to "
        "https://***@mlflow.example/api/2.0/x failed. Check MLFLOW_TRACKING_URI "
        "and that the tracking server is running."
    )
