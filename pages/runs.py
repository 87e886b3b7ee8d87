"""Runs: every run of an experiment, whoever logged it, as a table and charts.

The first page of runs draws at once; the rest load in the background and the
page redraws as they arrive, saying how many are in. Pick two or more rows to
compare them side by side.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import runs
from core.config import Settings
from core.runs import LoadStatus, RunCatalog
from pages import _components as ui

POLL_SECONDS = 1.0
DIFF_BG = "#fef3c7"  # amber-100: a param that differs between the compared runs
FILTER_EXAMPLE = "metrics.accuracy > 0.9 and params.estimator = 'random_forest'"


def pick_query(s: Settings, found: list[runs.Experiment]) -> tuple[str, str]:
    """Experiment picker, MLflow filter and refresh; returns (experiment id, filter)."""
    default = runs.default_experiment(s, found)
    names = {e.experiment_id: e.name for e in found}
    ids = list(names)
    which, query, again = st.columns([2, 4, 1], vertical_alignment="bottom")
    experiment_id = which.selectbox(
        "Experiment",
        ids,
        index=ids.index(default.experiment_id) if default else 0,
        format_func=names.__getitem__,
        key="runs.experiment",
        on_change=clear_selection,
    )
    filter_string = query.text_input(
        "MLflow filter",
        key="runs.filter",
        on_change=clear_selection,
        placeholder=FILTER_EXAMPLE,
        help="MLflow search syntax, applied by the tracking server. "
        f"Example: `{FILTER_EXAMPLE}`",
    )
    if again.button("Refresh", icon=":material/refresh:", key="runs.refresh"):
        runs.refresh(s, experiment_id)
    return experiment_id, filter_string


def clear_selection() -> None:
    """Widget callback: rows are picked by position, so a new filter unpicks them."""
    st.session_state.pop("runs.table", None)


def loading_status(catalog: RunCatalog, drawn: int) -> None:
    """Say what is loaded; while pages arrive, redraw the page as they do.

    The page is redrawn each time the loaded runs double (and at the end), not
    on every page: a redraw of 10 000 rows competes with the loading itself.
    The fragment polls in the browser only (AppTest draws it once per run) and
    is not registered at all once every run is loaded.
    """
    status = catalog.status()
    if status.complete or status.error:
        _show_status(status)
        return

    @st.fragment(run_every=POLL_SECONDS)
    def _poll() -> None:
        current = catalog.status()
        if current.complete or current.error or current.loaded >= 2 * drawn:
            st.rerun(scope="app")
        _show_status(current)

    _poll()


def _show_status(status: LoadStatus) -> None:
    if status.error:
        st.warning(status.describe(), icon=":material/warning:")
    elif status.complete:
        st.caption(
            f":material/check_circle: {status.describe()} in {status.seconds:.1f} s."
        )
    else:
        st.progress(status.fraction, text=f"{status.describe()} — loading the rest…")


def quick_filters(frame: pd.DataFrame) -> pd.DataFrame:
    """Search and status filters over the loaded runs."""
    text, states = st.columns([3, 2])
    needle = text.text_input(
        "Search",
        key="runs.search",
        on_change=clear_selection,
        placeholder="name, run id, user, model version, estimator…",
    )
    statuses = states.multiselect(
        "Status",
        sorted(frame["status"].dropna().unique()),
        key="runs.status",
        on_change=clear_selection,
        placeholder="Any status",
    )
    return runs.filter_frame(frame, needle, statuses)


def runs_table(view: pd.DataFrame) -> list[str]:
    """The sortable table; returns the ids of the selected rows."""
    config: dict[str, Any] = {
        "run_id": st.column_config.TextColumn("run id", width="small"),
        "run_name": st.column_config.TextColumn("name"),
        "start_time": st.column_config.DatetimeColumn(
            "started", format="YYYY-MM-DD HH:mm"
        ),
        "duration_s": st.column_config.NumberColumn("seconds", format="%.1f"),
        "model_version": st.column_config.TextColumn("version"),
    }
    for column in view.columns:
        if column.startswith(runs.METRIC_PREFIX):
            config[column] = st.column_config.NumberColumn(
                runs.short_name(column), format="%.4f", help=f"metric {column}"
            )
        elif column.startswith((runs.PARAM_PREFIX, runs.TAG_PREFIX)):
            config[column] = st.column_config.TextColumn(
                runs.short_name(column), help=column
            )
    event = st.dataframe(
        view,
        key="runs.table",
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        column_config=config,
        height=420,
    )
    rows = event.selection.rows
    return [str(view.iloc[i]["run_id"]) for i in rows if i < len(view)]


def comparison(frame: pd.DataFrame, chosen: list[str]) -> None:
    """Metrics and params of the chosen runs side by side, differing params marked."""
    if len(chosen) < 2:
        st.info(
            "Select two or more rows in the table to compare them side by side.",
            icon=":material/compare_arrows:",
        )
        return
    result = runs.compare(frame, chosen)
    st.subheader(f"Comparing {len(chosen)} runs")
    st.markdown("**Metrics**")
    st.dataframe(result.metrics.style.format("{:.4f}", na_rep="—"), key="runs.metrics")
    heading, toggle = st.columns([3, 1], vertical_alignment="bottom")
    heading.markdown(
        f"**Params** · {len(result.differing)} differ (:orange-background[highlighted])"
    )
    params = result.params
    if toggle.toggle("Only params that differ", key="runs.only_diff"):
        params = params.loc[list(result.differing)]
    st.dataframe(
        params.style.apply(_mark_differing, differing=result.differing, axis=1),
        key="runs.params",
    )


def _mark_differing(row: pd.Series, differing: tuple[str, ...]) -> list[str]:
    style = f"background-color: {DIFF_BG}; font-weight: 600"
    return [style if row.name in differing else ""] * len(row)


def charts(view: pd.DataFrame, chosen: list[str]) -> None:
    """A metric across runs, two metrics against each other, params vs a metric.

    Only the open tab is drawn: each chart may hold 10 000 points.
    """
    metrics = runs.metric_columns(view)
    if not metrics:
        st.info("These runs have no metrics to chart.", icon=":material/bar_chart:")
        return
    across, pairs, parallel = st.tabs(
        ["Metric across runs", "Metric vs metric", "Params vs metric"],
        key="runs.chart",
        on_change="rerun",
    )
    if across.open:
        with across:
            metric = st.selectbox(
                "Metric", metrics, key="runs.chart.metric", format_func=runs.short_name
            )
            st.plotly_chart(across_figure(view, metric, chosen), key="runs.across")
    if pairs.open:
        with pairs:
            x, y, color = pair_choices(view, metrics)
            st.plotly_chart(pairs_figure(view, x, y, color), key="runs.pairs")
    if parallel.open:
        with parallel:
            params, target = parallel_choices(view, metrics)
            if params:
                st.plotly_chart(
                    parallel_figure(view, params, target), key="runs.parallel"
                )
            else:
                st.caption("Pick one or more params to draw.")


def pair_choices(view: pd.DataFrame, metrics: list[str]) -> tuple[str, str, str | None]:
    """The x and y metrics and what colours the points.

    y starts on the metric most runs have besides x: a metric logged by one
    run alone would chart a single point.
    """
    x_column, y_column, color_column = st.columns(3)
    x = x_column.selectbox(
        "x", metrics, key="runs.chart.x", format_func=runs.short_name
    )
    others = sorted(
        (m for m in metrics if m != x), key=lambda m: -int(view[m].notna().sum())
    )
    y = y_column.selectbox(
        "y",
        metrics,
        index=metrics.index(others[0]) if others else 0,
        key="runs.chart.y",
        format_func=runs.short_name,
    )
    color = color_column.selectbox(
        "Colour by",
        [None, *runs.param_columns(view), *_tag_columns(view)],
        key="runs.chart.color",
        format_func=lambda c: "nothing" if c is None else runs.short_name(c),
    )
    return x, y, color


def parallel_choices(view: pd.DataFrame, metrics: list[str]) -> tuple[list[str], str]:
    """The params to draw as axes (default: up to six that vary) and the metric."""
    params = runs.param_columns(view)
    # Default axes: params that vary, the ones most runs have first.
    varied = sorted(
        (p for p in params if view[p].nunique() > 1),
        key=lambda p: -int(view[p].notna().sum()),
    )[:5]
    chosen = st.multiselect(
        "Params",
        params,
        default=varied,
        key="runs.chart.params",
        format_func=runs.short_name,
    )
    target = st.selectbox(
        "Metric", metrics, key="runs.chart.target", format_func=runs.short_name
    )
    return chosen, target


def across_figure(view: pd.DataFrame, metric: str, chosen: list[str]) -> go.Figure:
    """The metric of every run over start time, chosen runs highlighted."""
    points = runs.metric_across_runs(view, metric)
    picked = points["run_id"].isin(chosen)
    figure = go.Figure()
    for name, rows, colour in (
        ("runs", points.loc[~picked], ui.HEX["violet"]),
        ("selected", points.loc[picked], ui.HEX["orange"]),
    ):
        figure.add_trace(
            go.Scattergl(
                x=rows["start_time"],
                y=rows["value"],
                mode="markers",
                name=name,
                marker={
                    "color": colour,
                    "size": 5 if name == "runs" else 11,
                    "opacity": 0.6 if name == "runs" else 1.0,
                },
                customdata=rows[["run_name", "run_id"]],
                hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>"
                "%{y:.4f}<extra></extra>",
            )
        )
    return figure.update_layout(
        xaxis_title="started",
        yaxis_title=runs.short_name(metric),
        margin={"t": 30},
    )


def pairs_figure(view: pd.DataFrame, x: str, y: str, color: str | None) -> go.Figure:
    """One point per run: metric `x` against metric `y`."""
    points = runs.metric_pairs(view, x, y, color)
    figure = px.scatter(
        points,
        x=x,
        y=y,
        color=color,
        hover_data=["run_name", "run_id"],
        labels={c: runs.short_name(c) for c in points.columns},
        render_mode="webgl",
    )
    return figure.update_layout(margin={"t": 30})


def parallel_figure(view: pd.DataFrame, params: list[str], metric: str) -> go.Figure:
    """Parallel coordinates: each param an axis, lines coloured by the metric."""
    data = runs.parallel_data(view, params, metric)
    dimensions = []
    for column in [*params, metric]:
        axis: dict[str, object] = {
            "label": runs.short_name(column),
            "values": data.frame[column],
        }
        if column in data.categories:
            labels = data.categories[column]
            axis.update(tickvals=list(range(len(labels))), ticktext=labels)
        dimensions.append(axis)
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": data.frame[metric],
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": runs.short_name(metric)}},
            },
            dimensions=dimensions,
        )
    )
    return figure.update_layout(margin={"t": 60, "l": 110, "r": 60})


def _tag_columns(view: pd.DataFrame) -> list[str]:
    return [c for c in view.columns if c.startswith(runs.TAG_PREFIX)]


s = ui.settings()
st.title("Runs")
st.caption(
    "Every run of an experiment — ours and any other code's — with whatever "
    "metrics and params it logged."
)

with ui.reporting("Listing experiments", stop=True):
    found = runs.list_experiments(s)
if not found:
    st.info("No experiments yet: train a first model.", icon=":material/info:")
    st.page_link("pages/train.py", label="Train", icon=":material/model_training:")
    st.stop()

experiment_id, filter_string = pick_query(s, found)
with ui.reporting("Searching runs", stop=True):
    catalog = runs.catalog(s, experiment_id, filter_string)
frame = catalog.frame()
if frame.empty and catalog.status().complete:
    if filter_string.strip():
        st.info("No runs match this filter.", icon=":material/search_off:")
    else:
        st.info("No runs in this experiment yet.", icon=":material/info:")
        st.page_link("pages/train.py", label="Train", icon=":material/model_training:")
    st.stop()
loading_status(catalog, drawn=len(frame))

view = quick_filters(frame)
chosen = runs_table(view)
with ui.reporting("Comparing runs"):
    comparison(frame, chosen)
st.divider()
charts(view, chosen)
