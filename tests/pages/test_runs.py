"""The Runs page: the runs table, comparisons, charts and filter errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import streamlit as st
from mlflow.entities import Metric, Param
from streamlit.testing.v1 import AppTest

from core import runs
from core.config import Settings, load_settings
from core.tracking import client_for, ensure_experiment
from core.training import TrainRequest, train
from tests.conftest import new_store
from tests.pages.conftest import open_app_page as open_page

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, migrated_db: Path) -> Settings:
    """A store of this module with two trained versions (C=1.0 and C=0.3)."""
    home = new_store(tmp_path_factory.mktemp("runs-page"), migrated_db)
    settings = load_settings({"STUDIO_HOME": str(home)})
    for c in (1.0, 0.3):
        train(settings, TrainRequest("breast_cancer", params={"C": c}))
    return settings


@pytest.fixture
def runs_page(
    two_runs: Settings, use_env: Callable[[Mapping[str, str]], None]
) -> Iterator[AppTest]:
    """The Runs page over `two_runs` (read only: tests share the store)."""
    use_env({"STUDIO_HOME": str(two_runs.data_dir)})
    st.cache_data.clear()
    st.cache_resource.clear()
    yield open_page("runs")
    runs.refresh(two_runs)


def select_rows(at: AppTest, *rows: int) -> AppTest:
    """Tick rows of the runs table, as a click on their checkboxes does."""
    at.session_state["runs.table"] = {
        "selection": {"rows": list(rows), "columns": [], "cells": []}
    }
    return at.run()


def test_lists_the_trained_runs_with_their_versions(runs_page: AppTest) -> None:
    table = runs_page.dataframe(key="runs.table").value

    assert sorted(table["model_version"]) == [
        "studio-classifier v1",
        "studio-classifier v2",
    ]
    assert "metrics.accuracy" in table.columns
    assert "All 2 runs loaded" in runs_page.caption[1].value


def test_two_selected_runs_are_compared_param_by_param(runs_page: AppTest) -> None:
    at = select_rows(runs_page, 0, 1)

    assert at.subheader[0].value == "Comparing 2 runs"
    assert any("**Params** · 1 differ" in m.value for m in at.markdown)
    params = at.dataframe[-1].value  # runs table, metrics, then params
    assert sorted(params.loc["C"]) == ["0.3", "1.0"]


def test_one_selected_run_asks_for_another(runs_page: AppTest) -> None:
    at = select_rows(runs_page, 0)

    assert at.info[0].value.startswith("Select two or more rows")


@pytest.mark.parametrize(
    "tab", ["Metric across runs", "Metric vs metric", "Params vs metric"]
)
def test_each_chart_tab_draws_its_chart(runs_page: AppTest, tab: str) -> None:
    runs_page.session_state["runs.chart"] = tab
    at = runs_page.run()

    assert len(at.get("plotly_chart")) == 1
    assert not at.exception


def test_an_invalid_filter_is_a_message_not_a_traceback(runs_page: AppTest) -> None:
    at = runs_page.text_input(key="runs.filter").input("accuracy >>> 1").run()

    assert at.error[0].value.startswith(
        "Searching runs failed: the filter 'accuracy >>> 1' is not valid MLflow "
        "search syntax"
    )
    assert not at.exception


def test_runs_of_other_code_show_their_own_metrics(studio: Settings) -> None:
    experiment_id = ensure_experiment(studio, "forecasting")
    client = client_for(studio)
    now = int(time.time() * 1000)
    run = client.create_run(experiment_id, start_time=now, run_name="prophet")
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("val_loss", 0.25, now, 0)],
        params=[Param("horizon", "14")],
    )
    at = open_page("runs")

    at = at.selectbox(key="runs.experiment").set_value(experiment_id).run()

    table = at.dataframe(key="runs.table").value
    assert table[
        ["run_name", "metrics.val_loss", "params.horizon"]
    ].values.tolist() == [["prophet", 0.25, "14"]]
    assert "The only run loaded in" in at.caption[1].value
    runs.refresh(studio)


def test_metric_vs_metric_starts_on_metrics_most_runs_have(studio: Settings) -> None:
    experiment_id = ensure_experiment(studio, "sparse-metrics")
    client = client_for(studio)
    now = int(time.time() * 1000)
    for index in range(3):
        run = client.create_run(experiment_id, start_time=now + index)
        names = ["a_loss", "c_score"] + (["b_once"] if index == 0 else [])
        client.log_batch(
            run.info.run_id, metrics=[Metric(n, 0.1 * index, now, 0) for n in names]
        )
    at = open_page("runs")
    at.selectbox(key="runs.experiment").set_value(experiment_id)
    at.session_state["runs.chart"] = "Metric vs metric"

    at = at.run()

    assert at.selectbox(key="runs.chart.y").value == "metrics.c_score"
    runs.refresh(studio)


def test_an_empty_experiment_points_to_training(studio: Settings) -> None:
    at = open_page("runs")

    assert at.info[0].value == "No runs in this experiment yet."
    assert not at.exception
