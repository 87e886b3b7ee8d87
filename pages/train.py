"""Train: pick data, an estimator and its hyper-parameters; train in the background.

Training runs in its own process (`core.jobs`), so it keeps going when you
switch pages, reload the browser or restart the app; this page polls its state.
A finished job's version appears on the other pages at once. The form keeps its
choices when you switch pages (``persist_state="session"``); an uploaded file
cannot be kept that way and is asked for again.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core import data, jobs, runs
from core.config import Settings
from core.errors import StudioError
from core.training import ESTIMATORS, ParamSpec, TrainRequest
from pages import _components as ui

POLL_SECONDS = 1.0
LOG_LINES = 12
PREVIEW_ROWS = 20
# Column names taken for the target, best first.
TARGET_NAMES = ("target", "label", "class", "y")
# More distinct numbers than this in the target reads as a quantity, not labels.
CONTINUOUS_DISTINCT = 20
# Streamlit drops the state of widgets a run does not draw, so without this a
# visit to another page reset the form to its defaults.
KEEP = "session"
STATE_COLOR = {
    "queued": ui.WAIT,
    "running": ui.WAIT,
    "succeeded": ui.PASS,
    "failed": ui.FAIL,
    "cancelled": ui.IDLE,
}


@st.cache_data(show_spinner=False)
def builtin_summary(name: str) -> tuple[int, int, list[str]]:
    """Rows, feature count and classes of a built-in dataset."""
    dataset = data.load_builtin(name)
    return len(dataset.frame), len(dataset.features), dataset.classes


@st.cache_data(show_spinner=False, max_entries=4)
def upload_table(name: str, content: bytes) -> pd.DataFrame:
    """The whole uploaded file (raises DataError when unreadable).

    Whole, not its first rows: whether the target has two classes is a
    question about every row.
    """
    return jobs.preview_upload(jobs.Upload(name, content), rows=None)


def guess_target(columns: list[str]) -> str:
    """The column named like a target (in `TARGET_NAMES` order), else the last."""
    by_name = {c.lower(): c for c in reversed(columns)}  # the first of duplicates
    return next((by_name[n] for n in TARGET_NAMES if n in by_name), columns[-1])


def target_problem(table: pd.DataFrame, target: str) -> str:
    """Why this file cannot train a classifier on `target` ("" when it can)."""
    if table.empty:
        return "The file has a header but no data rows; add rows under the header."
    values = table[target].dropna().unique()
    if len(values) == 0:
        return f"{target!r} has no values; pick another target column."
    if len(values) == 1:
        return (
            f"{target!r} has a single value ({str(values[0])!r}) in every row; a "
            "classifier needs at least two classes. Pick another target column."
        )
    return ""


def looks_continuous(column: pd.Series) -> bool:
    """Numbers with many distinct values: a quantity to regress, not labels."""
    values = column.dropna()
    if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return False
    distinct = values.nunique()
    fractional = bool((values % 1 != 0).any())
    return distinct > CONTINUOUS_DISTINCT and (fractional or distinct > len(values) / 2)


def dataset_section() -> tuple[str, str | None, jobs.Upload | None, str]:
    """Built-in dataset or an upload.

    Returns (dataset, target, upload, why Start cannot run yet or "").
    """
    st.subheader("1 · Data")
    source = st.segmented_control(
        "Source",
        ["Built-in dataset", "Upload a file"],
        default="Built-in dataset",
        key="train.source",
        persist_state=KEEP,
    )
    if source != "Upload a file":
        name = st.selectbox(
            "Dataset", data.list_builtin(), key="train.builtin", persist_state=KEEP
        )
        rows, features, classes = builtin_summary(name)
        st.caption(
            f"{rows} rows · {features} numeric features · "
            f"{len(classes)} classes: {', '.join(classes)}"
        )
        return name, None, None, ""

    no_file = "", None, None, "Upload a readable file first."
    file = st.file_uploader(
        "CSV or Parquet file",
        type=[suffix.lstrip(".") for suffix in data.FILE_SUFFIXES],
        key="train.upload",
        help="It is saved with the training job, so nothing is lost on reload.",
    )
    if file is None:
        return no_file
    content = file.getvalue()
    try:
        table = upload_table(file.name, content)
    except StudioError as exc:
        ui.show_error(exc, f"Reading {file.name}")
        return no_file
    columns = list(table.columns)
    target = st.selectbox(
        "Target column",
        columns,
        index=columns.index(guess_target(columns)),
        key="train.target",
        help="The column the model learns to predict.",
    )
    distinct = table[target].nunique()
    st.caption(
        f"{len(table)} rows · {len(columns)} columns · "
        f"{distinct} distinct values in {target!r}"
    )
    st.dataframe(table.head(PREVIEW_ROWS), height=220, key="train.preview")
    problem = target_problem(table, target)
    if problem:
        st.warning(problem, icon=":material/block:")
    elif looks_continuous(table[target]):
        st.warning(
            f"Promotion Studio trains classifiers, and {target!r} looks continuous "
            f"({distinct} distinct numbers): each value would be a "
            "class of its own, and training fails on classes with a single row. "
            "Pick a column of labels, or bin the values into classes first.",
            icon=":material/warning:",
        )
    return file.name, target, jobs.Upload(file.name, content), problem


def estimator_section() -> tuple[str, dict[str, Any]]:
    """Estimator picker and one widget per hyper-parameter."""
    st.subheader("2 · Estimator")
    name = st.selectbox(
        "Estimator",
        list(ESTIMATORS),
        format_func=lambda n: ESTIMATORS[n].label,
        key="train.estimator",
        persist_state=KEEP,
    )
    specs = ESTIMATORS[name].params
    params: dict[str, Any] = {}
    for column, spec in zip(st.columns(len(specs)), specs, strict=True):
        with column:
            params[spec.name] = param_widget(spec, f"train.param.{name}.{spec.name}")
    return name, params


def param_widget(spec: ParamSpec, key: str) -> Any:
    """A number input for `spec`; an optional one gets a "limit" checkbox."""
    if spec.allow_none:
        limited = st.checkbox(
            f"Limit {spec.name}",
            value=spec.default is not None,
            key=f"{key}.on",
            persist_state=KEEP,
        )
        if not limited:
            st.caption(spec.help)
            return None
    integer = spec.kind is int
    default = spec.default if spec.default is not None else spec.low or 1
    value = st.number_input(
        spec.name,
        min_value=_bound(spec.low, integer),
        max_value=_bound(spec.high, integer),
        value=int(default) if integer else float(default),
        step=1 if integer else None,
        format=None if integer else "%g",
        help=spec.help,
        key=key,
        persist_state=KEEP,
    )
    return int(value) if integer else float(value)


def _bound(value: float | None, integer: bool) -> int | float | None:
    if value is None:
        return None
    return int(value) if integer else float(value)


def split_section() -> tuple[float, int, str]:
    """Golden split and a note for the run."""
    with st.expander("Split and notes"):
        size, seed = st.columns(2)
        test_size = size.slider(
            "Golden (test) share",
            min_value=0.05,
            max_value=0.5,
            value=0.25,
            step=0.05,
            key="train.test_size",
            persist_state=KEEP,
        )
        seed_value = seed.number_input(
            "Seed", 0, 2**31 - 1, 42, key="train.seed", persist_state=KEEP
        )
        description = st.text_input(
            "Description",
            key="train.description",
            placeholder="Why this run?",
            persist_state=KEEP,
        )
    return float(test_size), int(seed_value), description


def start(s: Settings, request: TrainRequest, upload: jobs.Upload | None) -> None:
    """Button callback: start the job and remember it for this session."""
    try:
        job = jobs.start_training(s, request, upload)
    except StudioError as exc:
        st.session_state["train.refused"] = exc
        return
    st.session_state["train.job"] = job.job_id


def cancel(s: Settings, job_id: str) -> None:
    """Button callback: stop a job's worker process."""
    try:
        jobs.cancel(s, job_id)
    except StudioError as exc:
        st.session_state["train.refused"] = exc


def live_jobs(s: Settings, job_ids: list[str]) -> None:
    """Progress and log of running jobs, polled every second in the browser."""

    @st.fragment(run_every=POLL_SECONDS)
    def _poll() -> None:
        current = [jobs.read_job(s, job_id) for job_id in job_ids]
        if any(not job.is_active for job in current):
            st.rerun(scope="app")
        for job in current:
            job_card(s, job)

    _poll()


def job_card(s: Settings, job: jobs.Job) -> None:
    """One running job: progress, the last log lines and a cancel button."""
    with st.container(border=True):
        st.markdown(
            f"{ui.badge_md(job.state, STATE_COLOR[job.state])} **{job.title}** "
            f"· started by {job.actor or '?'}"
        )
        st.progress(job.progress, text=job.message)
        lines = jobs.read_log(s, job.job_id, LOG_LINES)
        if lines:
            st.code("\n".join(lines), language=None, wrap_lines=True)
        st.button(
            "Cancel",
            key=f"train.cancel.{job.job_id}",
            icon=":material/stop_circle:",
            on_click=cancel,
            args=(s, job.job_id),
        )


def outcome(s: Settings, job: jobs.Job) -> None:
    """How a finished job ended: the new version, or what went wrong."""
    if job.state == "succeeded" and job.result:
        st.success(f"{job.title}: {job.message}.", icon=":material/check_circle:")
        metrics = job.result.get("metrics", {})
        shown = [m for m in ("accuracy", "f1", "roc_auc") if m in metrics]
        for column, metric in zip(st.columns(len(shown)), shown, strict=True):
            column.metric(metric, f"{metrics[metric]:.4f}")
        st.page_link(
            "pages/promote.py",
            label=f"Gate and promote version {job.version}",
            icon=":material/rocket_launch:",
        )
        return
    if job.state == "failed":
        st.error(f"{job.title} failed: {job.error}", icon=ui.ERROR_ICON)
    else:
        st.warning(f"{job.title} was {job.state}.", icon=":material/stop_circle:")
    with st.expander("Job log"):
        log = "\n".join(jobs.read_log(s, job.job_id, 60)) or "(empty)"
        st.code(log, language=None, wrap_lines=True)


def history(finished: list[jobs.Job]) -> None:
    """Finished jobs of everyone, newest first."""
    rows = [
        {
            "started": pd.Timestamp(job.created_at),
            "job": job.title,
            "state": job.state,
            "version": job.version or "",
            "accuracy": (job.result or {}).get("metrics", {}).get("accuracy"),
            "by": job.actor,
            "outcome": job.message if job.state == "succeeded" else job.error,
        }
        for job in finished
    ]
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        key="train.history",
        column_config={
            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "accuracy": st.column_config.NumberColumn(format="%.4f"),
            "outcome": st.column_config.TextColumn(width="large"),
        },
    )


def acknowledge(s: Settings, recent: list[jobs.Job]) -> None:
    """Once per session and job, make other pages re-read after a new version."""
    seen: set[str] = st.session_state.setdefault("train.seen", set())
    fresh = {j.job_id for j in recent if j.state == "succeeded"} - seen
    if fresh:
        seen.update(fresh)
        ui.refresh()
        runs.refresh_training_runs(s)


s = ui.settings()
st.title("Train")
st.caption(
    "Fit a classifier and register it as a candidate version. Training runs in "
    "a separate process: leave the page or reload, it keeps going."
)

form, activity = st.columns([3, 2], gap="large")
with form:
    dataset, target, upload, not_ready = dataset_section()
    estimator, params = estimator_section()
    test_size, seed, description = split_section()
    request = TrainRequest(
        dataset=dataset,
        estimator=estimator,
        params=params,
        target=target,
        test_size=test_size,
        seed=seed,
        description=description,
    )
    st.button(
        "Start training",
        type="primary",
        icon=":material/play_arrow:",
        disabled=bool(not_ready),
        help=not_ready or None,
        key="train.start",
        on_click=start,
        args=(s, request, upload),
    )

with activity:
    st.subheader("Jobs")
    refused = st.session_state.pop("train.refused", None)
    if refused is not None:
        ui.show_error(refused, "Starting the training")
    with ui.reporting("Reading the jobs", stop=True):
        recent = jobs.list_jobs(s, limit=10)
        acknowledge(s, recent)
    active = [job.job_id for job in recent if job.is_active]
    if active:
        live_jobs(s, active)
    finished = [job for job in recent if not job.is_active]
    mine = st.session_state.get("train.job")
    latest = next((j for j in finished if j.job_id == mine), None)
    if latest is None and finished and not active:
        latest = finished[0]
    if latest is not None:
        outcome(s, latest)
    elif not active:
        st.caption("No training jobs yet. Start one on the left.")

if finished:
    st.subheader("Recent jobs")
    history(finished)
