"""Overview: the model, which versions hold staging and production, live health.

A red banner appears when a server serves another version than its alias
names. With an empty registry, the page offers to train a first model.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import data, jobs, runs
from core.audit import AuditEvent
from core.config import STAGES, Settings
from core.errors import StudioError
from core.probes import ProbeResult
from core.registry import VersionInfo
from core.training import TrainRequest
from pages import _components as ui

REFRESH_SECONDS = 5
FIRST_DATASET = "breast_cancer"


@st.fragment(run_every=REFRESH_SECONDS)
def status_row(s: Settings, infos: list[VersionInfo]) -> None:
    """Mismatch banners, then one card for the model and one per stage."""
    with ui.reporting("Reading the aliases"):
        held = ui.aliases(s)
        results = {stage: ui.probe(s, stage) for stage in STAGES}
        for result in results.values():
            if result.matches is False:
                st.error(
                    f"**{result.stage}**: {ui.without_cli_hints(result.message)}. "
                    "Restart the server on the Deployments page, or roll back on "
                    "the Promote page.",
                    icon=":material/sync_problem:",
                )
        model, *stages = st.columns([1.2, 1, 1], gap="medium")
        with model.container(border=True, height="stretch"):
            model_card(s, infos)
        for column, stage in zip(stages, STAGES, strict=True):
            with column.container(border=True, height="stretch"):
                stage_card(stage, held.get(stage), results[stage])


def model_card(s: Settings, infos: list[VersionInfo]) -> None:
    """The registered model: versions, newest, other models in the store."""
    st.markdown(f"**Model** · `{s.model_name}`")
    newest = infos[0]
    st.metric("Versions", len(infos), help="Registered versions of this model.")
    st.caption(f"Newest: {ui.version_label(newest, ui.policy(s).digest)}")
    others = [n for n in ui.model_names(s) if n != s.model_name]
    if others:
        st.caption("Also in this store: " + ", ".join(f"`{n}`" for n in others))


def stage_card(stage: str, version: str | None, result: ProbeResult) -> None:
    """Which version holds the stage, and how its server answers."""
    st.markdown(ui.stage_md(stage))
    st.metric(
        f"{stage.capitalize()} alias",
        f"v{version}" if version else "unset",
    )
    ui.health_light(result, next_step="Launch it on the Deployments page.")


def latest_versions(infos: list[VersionInfo], policy_digest: str) -> None:
    """The five newest versions with their outcomes; an old policy's pass is stale."""
    rows = [
        {
            "version": f"v{i.version}",
            "stage": ", ".join(i.aliases) or "candidate",
            "estimator": i.tags.get("studio.estimator", ""),
            "accuracy": i.metrics.get("accuracy"),
            "f1": i.metrics.get("f1"),
            "gate": i.gate_state(policy_digest),
            "smoke": {None: "", True: "pass", False: "fail"}[i.smoke_passed],
            "registered": i.created_at.strftime("%b %d %H:%M"),
        }
        for i in infos[:5]
    ]
    frame = pd.DataFrame(rows)
    st.dataframe(
        frame.style.map(ui.color_outcome, subset=["gate", "smoke"]).format(
            {"accuracy": "{:.4f}", "f1": "{:.4f}"}, na_rep="—"
        ),
        hide_index=True,
        key="overview.versions",
    )


def recent_activity(found: list[AuditEvent]) -> None:
    """The last five audit events as a short feed."""
    if not found:
        st.caption("Nothing recorded yet: gate, promote or deploy a version.")
        return
    for event in found:
        what = event.kind
        if event.alias and event.from_version and event.kind in ("promote", "rollback"):
            what += f" {event.alias} v{event.from_version} → v{event.version}"
        elif event.alias:
            what += f" {event.alias}" + (f" v{event.version}" if event.version else "")
        elif event.version:
            what += f" v{event.version}"
        outcome = ""
        if event.outcome in ("passed", "failed"):
            outcome = " " + ui.outcome_md(event.outcome == "passed", event.kind)
        icon = ui.EVENT_ICON.get(event.kind, ":material/info:")
        st.markdown(
            f"{icon} **{what}**{outcome}  \n"
            f":gray[{event.at:%Y-%m-%d %H:%M} UTC · {event.actor}"
            + (f" · “{event.reason}”" if event.reason else "")
            + "]"
        )


def first_model(s: Settings) -> None:
    """The empty-registry welcome: train a first model with one click."""
    with st.container(border=True):
        st.subheader("Welcome")
        st.markdown(
            f"`{s.model_name}` has no versions yet. Train a first one on a "
            "built-in dataset, then take it through the gate to staging and "
            "production."
        )
        builtin = data.list_builtin()
        st.selectbox(
            "Built-in dataset",
            builtin,
            index=builtin.index(FIRST_DATASET) if FIRST_DATASET in builtin else 0,
            key="overview.dataset",
        )
        job = _first_model_job(s)
        training = job is not None and job.is_active
        st.button(
            "Train a first model",
            key="overview.train",
            type="primary",
            icon=":material/model_training:",
            disabled=training,
            help="A model is training; its version appears here when it is done."
            if training
            else None,
            on_click=start_first_model,
            args=(s,),
        )
        ui.page_link(
            "pages/train.py",
            "Or choose your data, estimator and parameters on the Train page",
            ":material/tune:",
        )
        refused = st.session_state.pop("overview.refused", None)
        if refused:
            ui.show_error(refused, "Starting the training")
        if job is not None:
            job_progress(s, job.job_id)


def start_first_model(s: Settings) -> None:
    """Button callback: train the chosen dataset in a background process.

    A second click while a job trains (before the page redrew the button as
    disabled, or from another tab) follows that job instead of starting another.
    """
    active = _active_job(s)
    if active is not None:
        st.session_state["overview.job"] = active
        return
    request = TrainRequest(
        dataset=st.session_state["overview.dataset"],
        estimator="logistic_regression",
        description="First model, trained from the Overview page.",
    )
    try:
        job = jobs.start_training(s, request)
    except StudioError as exc:
        st.session_state["overview.refused"] = exc
        return
    st.session_state["overview.job"] = job.job_id


def _active_job(s: Settings) -> str | None:
    """A training job still running (after a reload, or from another tab)."""
    active = [j for j in jobs.list_jobs(s, limit=5) if j.is_active]
    return active[0].job_id if active else None


def _first_model_job(s: Settings) -> jobs.Job | None:
    """The job this session started, or else any job still training."""
    with ui.reporting("Reading the training job"):
        job_id = st.session_state.get("overview.job") or _active_job(s)
        return jobs.read_job(s, job_id) if job_id else None
    return None


def job_progress(s: Settings, job_id: str) -> None:
    """Follow a training job; when its version is registered, show the model."""
    with ui.reporting("Reading the training job"):
        job = jobs.read_job(s, job_id)
        if not job.is_active:
            _job_outcome(s, job)
            return

        @st.fragment(run_every=1.0)
        def _poll() -> None:
            current = jobs.read_job(s, job_id)
            if not current.is_active:
                st.rerun(scope="app")
            st.progress(current.progress, text=f"{current.title}: {current.message}")

        _poll()


def _job_outcome(s: Settings, job: jobs.Job) -> None:
    if job.state == "succeeded":
        ui.refresh()
        # The Runs page keeps a catalog of the training experiment: drop it too.
        runs.refresh_training_runs(s)
        st.session_state.pop("overview.job", None)
        st.rerun()
    st.error(
        f"Training {job.title} {job.state}: {job.error or job.message}",
        icon=ui.ERROR_ICON,
    )


s = ui.settings()
st.title("Promotion Studio")
st.caption(
    "Which versions hold staging and production, and whether their servers serve "
    f"them. Health refreshes every {REFRESH_SECONDS} s."
)

with ui.reporting("Reading the registry", stop=True):
    infos = ui.versions(s)
if not infos:
    first_model(s)
    st.stop()

status_row(s, infos)

versions_column, activity_column = st.columns([5, 2], gap="medium")
with versions_column:
    st.subheader("Latest versions")
    with ui.reporting("Reading the gate policy"):
        latest_versions(infos, ui.policy(s).digest)
with activity_column:
    st.subheader("Recent activity")
    with ui.reporting("Reading the audit log"):
        recent_activity(ui.events(s, limit=5))
