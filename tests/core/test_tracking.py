"""Access to the tracking store: experiments, the fluent API, error wrapping."""

from __future__ import annotations

import os

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from core.config import Settings, load_settings
from core.tracking import (
    client_for,
    ensure_experiment,
    fail_fast_over_http,
    fluent,
    unreachable,
)


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


def test_a_message_ending_in_a_full_stop_gets_one(tmp_path) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})
    text = str(unreachable(settings, MlflowException("no such table.")))
    assert "failed: no such table. Check" in text


def test_fail_fast_shortens_retries_but_keeps_the_users_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Set, then delete: monkeypatch restores only what it saw, and the values
    # fail_fast_over_http writes must not outlive this test.
    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    ):
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")

    fail_fast_over_http()

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "60"
