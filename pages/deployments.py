"""Deployments: the staging and production servers side by side.

For each stage: the backend running it, launch / restart / stop (background
tasks), live /health and response time refreshed by a fragment, the served
version against the alias, a short latency history, a test request form and
the tail of the server's log.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import probes, rollout
from core.config import STAGES, Settings, Stage
from core.registry import VersionInfo
from pages import _components as ui

REFRESH_SECONDS = 3
LOG_LINES = 80
HISTORY_MINUTES = 10


def controls(s: Settings, stage: Stage, state: str, alias: str | None) -> None:
    """Launch, restart and stop buttons, enabled by the server's state."""
    up = state in ("running", "starting")
    busy = (task := ui.task_board().get(stage)) is not None and task.running
    launch, restart, stop = st.columns(3)
    launch.button(
        "Launch",
        key=f"deploy.launch.{stage}",
        icon=":material/play_arrow:",
        type="primary",
        disabled=up or busy,
        on_click=_start,
        args=(s, stage, "launch"),
        width="stretch",
    )
    restart.button(
        "Restart",
        key=f"deploy.restart.{stage}",
        icon=":material/restart_alt:",
        disabled=not up or busy,
        on_click=_start,
        args=(s, stage, "restart"),
        width="stretch",
    )
    stop.button(
        "Stop",
        key=f"deploy.stop.{stage}",
        icon=":material/stop:",
        disabled=state in ("stopped", "missing") or busy,
        on_click=_start,
        args=(s, stage, "stop"),
        width="stretch",
    )
    if alias is None and not up:
        st.caption(
            f"No version holds {stage} yet: a launched server waits for one. "
            "Release a version on the Promote page."
        )


def _start(s: Settings, stage: Stage, action: str) -> None:
    """Button callback: launch, restart or stop the server in the background."""

    def work(progress: Any) -> Any:
        # Through rollout, so each of these is an audit event like a release.
        if action == "launch":
            return rollout.deploy(s, stage, progress=progress)
        if action == "restart":
            backend = ui.stage_backend(s, stage).name
            return rollout.deploy(s, stage, backend=backend, progress=progress)
        return rollout.stop(s, stage)

    ui.start_task(stage, f"{action.capitalize()} the {stage} server", work, _describe)


def _describe(result: Any) -> str:
    if isinstance(result, rollout.DeployResult):
        health = ui.without_cli_hints(result.probe.message)
        return f"Running on {result.backend}: {health}"
    return f"Server {result.state}: {ui.without_cli_hints(result.detail)}"


def server_state(s: Settings, stage: Stage) -> str:
    """Draw the server's state line; return the state ("missing" if unknown)."""
    try:
        status = ui.server_status(s, stage)
    except Exception as exc:
        ui.show_error(exc, f"Reading the {stage} server")
        return "missing"
    color = ui.SERVER_STATE_COLOR.get(status.state, ui.IDLE)
    # A stopped or exited server keeps its record's start time; "since" would
    # then read as if it still ran.
    since = ""
    if status.started_at is not None and status.state in ("running", "starting"):
        since = f" · since {status.started_at:%H:%M:%S} UTC"
    st.markdown(
        ui.badge_md(status.state, color, ":material/dns:") + f" {status.backend}{since}"
    )
    detail = ui.readable_times(ui.without_cli_hints(status.detail))
    st.caption(detail + (f" · {status.url}" if status.url else ""))
    return status.state


@st.fragment(run_every=REFRESH_SECONDS)
def live_health(s: Settings, stage: Stage) -> None:
    """Probe the server every few seconds: light, versions, response time."""
    with ui.reporting(f"Probing {stage}"):
        result = ui.probe(s, stage)
        ui.health_light(result, next_step="Press Launch to start it.")
        served, alias, timing = st.columns(3)
        served.metric(
            "Serves", f"v{result.served_version}" if result.served_version else "—"
        )
        alias.metric(
            f"{stage} alias",
            f"v{result.alias_version}" if result.alias_version else "unset",
        )
        timing.metric(
            "/health",
            f"{result.response_ms:.0f} ms" if result.response_ms is not None else "—",
        )
        if result.matches is False:
            st.error(
                f"{ui.without_cli_hints(result.message)}. Restart the server to "
                f"serve the {stage} version, or roll back on the Promote page.",
                icon=":material/sync_problem:",
            )
        latency_chart(stage)


def latency_chart(stage: Stage) -> None:
    """Response times of the last minutes' probes, coloured by their light."""
    history = ui.latency_history(stage).dropna(subset=["response_ms"])
    recent = pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=HISTORY_MINUTES)
    history = history[history["time"] >= recent]
    if len(history) < 2:
        st.caption("Latency history appears after a few probes.")
        return
    figure = go.Figure(
        go.Scatter(
            x=history["time"],
            y=history["response_ms"],
            mode="lines+markers",
            line={"color": ui.HEX["blue"], "width": 1.5},
            marker={
                "size": 6,
                "color": [
                    ui.HEX[ui.LIGHT_COLOR.get(x, "gray")] for x in history["light"]
                ],
            },
            hovertemplate="%{x|%H:%M:%S}: %{y:.0f} ms<extra></extra>",
        )
    )
    figure.update_layout(
        height=170,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        yaxis={"title": "ms", "rangemode": "tozero"},
    )
    st.plotly_chart(figure, key=f"deploy.latency.{stage}")


def test_request(s: Settings, stage: Stage, info: VersionInfo | None) -> None:
    """Send records to the server and show its answer (or its 4xx message)."""
    key = f"deploy.body.{stage}"
    if key not in st.session_state:
        rows = []
        if info is not None:
            with ui.reporting("Reading example rows"):
                rows = ui.sample_records(s, info.run_id)
        st.session_state[key] = json.dumps(rows, indent=2)
    with st.form(f"deploy.predict.{stage}", border=False):
        body = st.text_area(
            "Records (a JSON list of rows)",
            key=key,
            height=200,
            help="Pre-filled with golden rows of the version the alias points to.",
        )
        sent = st.form_submit_button("Send", icon=":material/send:")
    if not sent:
        return
    try:
        records = json.loads(body)
    except json.JSONDecodeError as exc:
        st.error(
            f"The body is not valid JSON ({exc.msg} at line {exc.lineno}); write "
            'a list of rows like [{"feature": 1.0}].',
            icon=ui.ERROR_ICON,
        )
        return
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        st.error(
            'Send a JSON list of rows (objects), like [{"feature": 1.0}].',
            icon=ui.ERROR_ICON,
        )
        return
    with ui.reporting("The test request"):
        answer = probes.predict(s, stage, records)
        st.json(answer)


def server_panel(
    s: Settings, stage: Stage, held: dict[str, str], infos: list[VersionInfo]
) -> None:
    """Everything about one stage's server, top to bottom."""
    alias = held.get(stage)
    with st.container(border=True):
        st.markdown(f"#### {stage.capitalize()}  " + ui.stage_md(stage, alias))
        state = server_state(s, stage)
        controls(s, stage, state, alias)
        ui.task_panel(stage)
        live_health(s, stage)
    by_number = {i.version: i for i in infos}
    with st.expander("Send a test request", icon=":material/send:"):
        test_request(s, stage, by_number.get(alias or ""))
    with (
        st.expander(f"Server log (last {LOG_LINES} lines)", icon=":material/terminal:"),
        ui.reporting(f"Reading the {stage} log"),
    ):
        st.code(ui.server_logs(s, stage, LOG_LINES) or "(no output yet)", language=None)


s = ui.settings()
ui.acknowledge_finished_tasks()
st.title("Deployments")
with ui.reporting("Choosing the deployment backend"):
    st.caption(
        f":material/deployed_code: Servers run on **{ui.backend_choice(s)}**. "
        f"Health refreshes every {REFRESH_SECONDS} s."
    )

with ui.reporting("Reading the registry", stop=True):
    held = ui.aliases(s)
    infos = ui.versions(s)

for column, stage in zip(st.columns(2, gap="large"), STAGES, strict=True):
    with column:
        server_panel(s, stage, held, infos)
