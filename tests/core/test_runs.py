"""Runs as tables: paged, cached catalogs, comparisons and chart data."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag

from core import runs
from core.config import Settings
from core.errors import SearchError
from core.tracking import client_for, ensure_experiment

MINUTE_MS = 60_000


def log_runs(
    settings: Settings,
    count: int,
    experiment: str = "promotion-studio",
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, str] | None = None,
) -> list[str]:
    """Log `count` finished runs a minute apart, as any other code would."""
    client = client_for(settings)
    experiment_id = ensure_experiment(settings, experiment)
    start = int(time.time() * 1000) - count * MINUTE_MS
    ids = []
    for i in range(count):
        begun = start + i * MINUTE_MS
        run = client.create_run(
            experiment_id, start_time=begun, run_name=f"run-{i}", tags={"team": "x"}
        )
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric(k, v, begun, 0)
                for k, v in (metrics or {"accuracy": 0.5 + i / 100}).items()
            ],
            params=[Param(k, v) for k, v in (params or {"C": str(i % 2)}).items()],
            tags=[RunTag("studio.estimator", "logistic_regression")],
        )
        client.set_terminated(run.info.run_id, end_time=begun + 1500)
        ids.append(run.info.run_id)
    return ids


@pytest.fixture
def seven_runs(settings: Settings) -> Iterator[str]:
    """An experiment of seven runs; yields its id and forgets its catalogs after."""
    log_runs(settings, 7)
    yield ensure_experiment(settings, settings.experiment_name)
    runs.refresh(settings)


def test_catalog_returns_the_first_page_then_loads_the_rest(
    settings: Settings, seven_runs: str
) -> None:
    catalog = runs.catalog(settings, seven_runs, page_size=3, background=False)

    assert len(catalog.frame()) == 3
    assert not catalog.status().complete
    catalog.start_background()
    assert catalog.wait(timeout=30)
    assert len(catalog.frame()) == 7
    assert catalog.frame()["run_id"].is_unique


def test_pages_arrive_newest_first(settings: Settings, seven_runs: str) -> None:
    catalog = runs.catalog(settings, seven_runs, page_size=3)
    catalog.wait(timeout=30)

    names = catalog.frame()["run_name"].tolist()

    assert names == [f"run-{i}" for i in range(6, -1, -1)]


def test_status_estimates_the_total_from_start_times(
    settings: Settings, seven_runs: str
) -> None:
    catalog = runs.catalog(settings, seven_runs, page_size=3, background=False)

    status = catalog.status()

    assert (status.loaded, status.estimated_total) == (3, 7)
    assert status.describe() == "3 of ~7 runs loaded"


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (runs.LoadStatus(10_000, 10_000, True), "All 10 000 runs loaded"),
        (runs.LoadStatus(1, 1, True), "The only run loaded"),
        (runs.LoadStatus(1000, 9800, False), "1 000 of ~9 800 runs loaded"),
        (runs.LoadStatus(1000, None, False), "1 000+ runs loaded"),
        (
            runs.LoadStatus(1000, None, False, error="MLflow down"),
            "1 000+ runs loaded; loading stopped: MLflow down",
        ),
    ],
)
def test_status_says_what_is_loaded(status: runs.LoadStatus, text: str) -> None:
    assert status.describe() == text


def test_catalogs_are_shared_until_refreshed(
    settings: Settings, seven_runs: str
) -> None:
    first = runs.catalog(settings, seven_runs)

    assert runs.catalog(settings, seven_runs) is first
    assert runs.catalog(settings, seven_runs, "metrics.accuracy > 0.52") is not first
    assert runs.refresh(settings, seven_runs) == 2
    assert runs.catalog(settings, seven_runs) is not first


def test_training_refresh_keeps_other_experiments(
    settings: Settings, seven_runs: str
) -> None:
    log_runs(settings, 1, "forecasting")
    other = runs.catalog(settings, ensure_experiment(settings, "forecasting"))
    runs.catalog(settings, seven_runs)

    assert runs.refresh_training_runs(settings) == 1
    assert runs.catalog(settings, other.query.experiment_id) is other


def test_refresh_picks_up_new_runs(settings: Settings, seven_runs: str) -> None:
    runs.catalog(settings, seven_runs).wait(timeout=30)
    log_runs(settings, 1)

    runs.refresh(settings)
    catalog = runs.catalog(settings, seven_runs)
    catalog.wait(timeout=30)

    assert catalog.status().loaded == 8


def test_filter_is_applied_by_the_store(settings: Settings, seven_runs: str) -> None:
    catalog = runs.catalog(settings, seven_runs, "metrics.accuracy >= 0.55")
    catalog.wait(timeout=30)

    assert sorted(catalog.frame()["run_name"]) == ["run-5", "run-6"]


def test_invalid_filter_says_how_to_write_one(
    settings: Settings, seven_runs: str
) -> None:
    with pytest.raises(SearchError) as caught:
        runs.catalog(settings, seven_runs, "accuracy >>> 1")

    assert str(caught.value).startswith(
        "the filter 'accuracy >>> 1' is not valid MLflow search syntax"
    )
    assert "metrics.accuracy > 0.9" in str(caught.value)


def test_runs_of_other_code_keep_their_own_metrics_and_params(
    settings: Settings,
) -> None:
    log_runs(settings, 2, "forecasting", {"val_loss": 0.3}, {"lr": "0.001"})
    experiment_id = ensure_experiment(settings, "forecasting")

    frame = runs.catalog(settings, experiment_id).frame()

    assert runs.metric_columns(frame) == ["metrics.val_loss"]
    assert runs.param_columns(frame) == ["params.lr"]
    assert frame["duration_s"].tolist() == [1.5, 1.5]
    runs.refresh(settings)


def test_trained_runs_name_their_registered_versions(trained) -> None:
    experiment = runs.default_experiment(
        trained.settings, runs.list_experiments(trained.settings)
    )
    assert experiment is not None

    catalog = runs.catalog(trained.settings, experiment.experiment_id)
    catalog.wait(timeout=30)
    by_run = catalog.frame().set_index("run_id")["model_version"]

    # Other tests register the session's runs under their own model names too.
    assert "studio-classifier v1" in by_run[trained.run_id("1")].split(", ")
    ours = [trained.run_id(v) for v in ("1", "2", "3")]
    estimators = catalog.frame().set_index("run_id").loc[ours, "tags.studio.estimator"]
    assert estimators.notna().all()
    runs.refresh(trained.settings)


def test_default_experiment_is_the_studio_one(settings: Settings) -> None:
    ensure_experiment(settings, "another")
    ensure_experiment(settings, settings.experiment_name)

    found = runs.list_experiments(settings)
    chosen = runs.default_experiment(settings, found)

    assert chosen is not None and chosen.name == "promotion-studio"
    assert [e.name for e in found] == ["another", "Default", "promotion-studio"]


def sample_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": ["a" * 32, "b" * 32, "c" * 32],
            "run_name": ["lr", "rf", "ext"],
            "status": ["FINISHED", "FINISHED", "FAILED"],
            "start_time": pd.to_datetime([3, 1, 2], unit="s", utc=True),
            "user": ["ann", "bob", "cy"],
            "model_version": ["studio-classifier v1", "", ""],
            "tags.studio.estimator": ["logistic_regression", "random_forest", None],
            "metrics.accuracy": [0.9, 0.8, None],
            "metrics.f1": [0.88, 0.79, 0.5],
            "params.C": ["1.0", None, None],
            "params.seed": ["42", "42", None],
            "params.max_depth": [None, "None", None],
        }
    )


def test_compare_lists_the_params_that_differ() -> None:
    result = runs.compare(sample_frame(), ["a" * 32, "b" * 32])

    assert result.differing == ("C", "max_depth")
    assert result.params.loc["C"].tolist() == ["1.0", "(not set)"]
    assert result.metrics.loc["accuracy"].tolist() == [0.9, 0.8]
    assert list(result.metrics.columns) == ["lr · aaaaaaa", "rf · bbbbbbb"]


@pytest.mark.parametrize(
    ("run_ids", "message"),
    [
        (["a" * 32], "pick at least two runs to compare."),
        (
            ["a" * 32, "z" * 32],
            f"run {'z' * 32} is not among the loaded runs; refresh the list or "
            "wait until every page is loaded.",
        ),
    ],
)
def test_compare_needs_two_loaded_runs(run_ids: list[str], message: str) -> None:
    with pytest.raises(SearchError, match="^" + message.replace(".", r"\.") + "$"):
        runs.compare(sample_frame(), run_ids)


@pytest.mark.parametrize(
    ("text", "statuses", "names"),
    [
        ("", (), ["lr", "rf", "ext"]),
        ("RANDOM", (), ["rf"]),
        ("v1", (), ["lr"]),
        ("", ("FAILED",), ["ext"]),
        ("b", ("FINISHED",), ["rf"]),
    ],
)
def test_filter_frame_matches_text_and_status(
    text: str, statuses: tuple[str, ...], names: list[str]
) -> None:
    found = runs.filter_frame(sample_frame(), text, statuses)

    assert found["run_name"].tolist() == names


def test_metric_across_runs_is_oldest_first_without_gaps() -> None:
    points = runs.metric_across_runs(sample_frame(), "metrics.accuracy")

    assert points["run_name"].tolist() == ["rf", "lr"]
    assert points["value"].tolist() == [0.8, 0.9]


def test_metric_pairs_keep_runs_with_both_metrics() -> None:
    pairs = runs.metric_pairs(
        sample_frame(), "metrics.accuracy", "metrics.f1", "params.seed"
    )

    assert pairs["run_name"].tolist() == ["lr", "rf"]
    assert list(pairs.columns)[-1] == "params.seed"


def test_parallel_data_gives_each_param_value_a_tick() -> None:
    data = runs.parallel_data(
        sample_frame(), ["params.seed", "tags.studio.estimator"], "metrics.f1"
    )

    assert data.categories == {
        "params.seed": ["42", "(not set)"],
        "tags.studio.estimator": ["logistic_regression", "random_forest", "(not set)"],
    }
    assert data.frame["params.seed"].tolist() == [0, 0, 1]
    assert data.frame["tags.studio.estimator"].tolist() == [0, 1, 2]


def test_parallel_data_orders_numeric_ticks_by_value() -> None:
    frame = sample_frame().assign(**{"params.C": ["10", "9", "0.5"]})

    data = runs.parallel_data(frame, ["params.C"], "metrics.f1")

    assert data.categories["params.C"] == ["0.5", "9", "10"]


def test_parallel_data_keeps_many_distinct_numbers_continuous() -> None:
    frame = pd.DataFrame(
        {"params.lr": [str(i / 100) for i in range(30)], "metrics.loss": range(30)}
    )

    data = runs.parallel_data(frame, ["params.lr"], "metrics.loss")

    assert data.categories == {}
    assert data.frame["params.lr"].iloc[-1] == 0.29


def test_to_frame_of_no_runs_has_the_base_columns() -> None:
    frame = runs.to_frame([])

    assert list(frame.columns) == list(runs.BASE_COLUMNS)
    assert frame.empty
