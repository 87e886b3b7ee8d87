"""Shared wiring and small reusable pieces of the app's pages.

Pages import this module as ``ui``. It holds the cached settings and actor, the
cached reads of `core` (short TTLs, cleared by `refresh` after every write),
the one way a failure is shown, a board of background tasks for operations that
outlive a script run (server launches, releases), and the drawing helpers every
page shares: stage badges, health lights, version cards, pass/fail tables.
Everything that fetches or decides is in `core`; nothing here talks to MLflow,
Docker or HTTP directly.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError
from streamlit.runtime.pages_manager import PagesManager

from core import artifacts, audit, deployment, gates, probes, promotion, registry
from core.config import STAGES, Settings, Stage, load_settings, with_actor
from core.errors import (
    BackendUnavailableError,
    ConcurrentMoveError,
    ConfigError,
    StudioError,
)
from core.gates import CheckResult, Measurement, Policy
from core.registry import VersionInfo
from core.tasks import Task, TaskBoard

logger = logging.getLogger(__name__)

# One palette for the whole app (the theme in .streamlit/config.toml defines the
# exact shades): st.badge / markdown colour names, and hex codes for charts.
PASS, FAIL, WAIT, IDLE = "green", "red", "orange", "gray"
HEX = {
    "green": "#059669",
    "red": "#dc2626",
    "orange": "#d97706",
    "gray": "#94a3b8",
    "violet": "#7c3aed",
    "blue": "#2563eb",
}
PASS_BG, FAIL_BG, WAIT_BG, IDLE_BG = "#d1fae5", "#fee2e2", "#fef3c7", "#f1f5f9"
STAGE_COLOR = {"candidate": "gray", "staging": "violet", "production": "blue"}
STAGE_ICON = {
    "candidate": ":material/inventory_2:",
    "staging": ":material/science:",
    "production": ":material/public:",
}
LIGHT_COLOR = {"green": PASS, "amber": WAIT, "red": FAIL}
LIGHT_ICON = {
    "green": ":material/check_circle:",
    "amber": ":material/pending:",
    "red": ":material/error:",
}
LIGHT_LABEL = {"green": "Healthy", "amber": "Waiting", "red": "Down"}
EVENT_ICON = {
    "promote": ":material/rocket_launch:",
    "rollback": ":material/undo:",
    "gate": ":material/fact_check:",
    "smoke": ":material/local_fire_department:",
    "policy": ":material/tune:",
    "deploy": ":material/dns:",
}
GATE_LABEL = {
    "": "",
    "pass": " · gate ✓",
    "fail": " · gate ✗",
    "stale": " · gate stale",
}
SERVER_STATE_COLOR = {
    "running": PASS,
    "starting": WAIT,
    "stopped": IDLE,
    "missing": IDLE,
    "exited": FAIL,
}

# Env variables whose values shape `Settings`; their snapshot keys the cache so a
# changed environment (tests, a restarted server) is read again.
_SETTINGS_PREFIXES = ("STUDIO_", "MLFLOW_", "GATE_", "ACCURACY_THRESHOLD", "BASE_")
LATENCY_SAMPLES = 120
ERROR_ICON = ":material/error:"


# --- settings and actor ---------------------------------------------------------


@st.cache_resource(show_spinner=False)
def _settings_for(env: tuple[tuple[str, str], ...]) -> Settings:
    return load_settings(dict(env))


def base_settings() -> Settings:
    """Settings from the environment (cached per environment snapshot).

    Shows the configuration error and stops the page when a variable is invalid.
    """
    env = tuple(
        sorted(
            (k, v) for k, v in os.environ.items() if k.startswith(_SETTINGS_PREFIXES)
        )
    )
    try:
        return _settings_for(env)
    except ConfigError as exc:
        show_error(exc, "Reading the settings")
        st.stop()
        raise  # unreachable: st.stop() raises; keeps type checkers informed


def actor(fallback: str = "") -> str:
    """Who is acting: the signed-in user when authentication is configured.

    Without an ``[auth]`` section in secrets.toml `st.user` has no
    ``is_logged_in`` at all, so read it with ``get`` instead of attribute access.
    """
    try:
        user: Mapping[str, Any] = st.user
        if user.get("is_logged_in"):
            for claim in ("email", "name", "preferred_username", "sub"):
                value = user.get(claim)
                if value:
                    return str(value)
    except Exception:  # st.user outside a script run, or a host without it
        logger.debug("st.user unavailable; acting as the configured user")
    return fallback


def settings() -> Settings:
    """The settings pages pass to `core`, acting as the current user.

    Called first by every page, so it also makes sure the page runs through
    app.py's navigation (see `_through_navigation`).
    """
    _through_navigation()
    base = base_settings()
    return with_actor(base, actor(base.actor))


def _through_navigation() -> None:
    """Rerun through app.py when Streamlit ran a page file by itself.

    Streamlit 1.67 decides once per process, when the first session starts,
    whether the app uses a ``pages/`` folder (``PagesManager.
    uses_pages_directory``) and clears that only once ``st.navigation`` runs.
    Until then, a first visit to a page URL such as /promote runs
    pages/promote.py on its own (multipage v1): no page config, no sections,
    every file of pages/ listed in the sidebar. Clearing the flag and rerunning
    makes Streamlit run app.py, whose navigation routes to the same page.
    """
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


# --- failures -------------------------------------------------------------------

_NEXT_STEP: dict[type[StudioError], str] = {
    BackendUnavailableError: "Start the Docker engine, or run servers as local "
    "processes with STUDIO_DEPLOY_BACKEND=process.",
    ConcurrentMoveError: "Someone else moved it meanwhile; the page now shows the "
    "current state.",
}


def show_error(exc: BaseException, action: str = "") -> None:
    """Show a failure as a message with the next step; log unexpected ones."""
    prefix = f"{action} failed: " if action else ""
    if isinstance(exc, StudioError):
        logger.warning("%s%s", prefix, exc)
        first, _, rest = str(exc).partition("\n")
        st.error(prefix + first, icon=ERROR_ICON)
        hint = next((t for k, t in _NEXT_STEP.items() if isinstance(exc, k)), "")
        if hint:
            st.caption(hint)
        if rest.strip():
            with st.expander("Details"):
                st.code(rest.strip(), language=None)
        return
    logger.error("%sunexpected error", prefix, exc_info=exc)
    st.error(
        f"{prefix or 'This page failed: '}an unexpected {type(exc).__name__} "
        f"({str(exc)[:300]}). The traceback is in the app's log; try again, and "
        "report it if it happens again.",
        icon=ERROR_ICON,
    )


# Core's messages serve the CLI too: some end with the command to run next,
# which inside the app sits next to the button doing the same thing.
_CLI_HINT = "python -m core"
_CLI_PAREN = re.compile(r"\s*\([^()]*python -m core[^()]*\)")
_ISO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?(?:\+00:00|Z)"
)


def without_cli_hints(text: str) -> str:
    """`text` without the clauses naming a ``python -m core`` command.

    "no staging server answers at URL; deploy it with python -m core deploy …"
    becomes "no staging server answers at URL"; callers add the app's own step.
    """
    text = _CLI_PAREN.sub("", text)
    kept = [c for c in _clauses(text) if _CLI_HINT not in c]
    return " ".join(kept).rstrip(" ;,") if kept else text


def _clauses(text: str) -> list[str]:
    """Split after each "; " or ". " outside parentheses, keeping the marks."""
    found, start, depth = [], 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        ends = char in ";." and depth <= 0
        if ends and (index + 1 == len(text) or text[index + 1].isspace()):
            found.append(text[start : index + 1].strip())
            start = index + 1
    tail = text[start:].strip()
    return [*found, tail] if tail else found


def readable_times(text: str) -> str:
    """ISO timestamps in core's messages as "2026-12-04 06:38:13 UTC"."""
    return _ISO_TIME.sub(r"\1 \2 UTC", text)


def when(stamp: str | None) -> str:
    """A recorded ISO timestamp (a tag value) as "2026-12-04 06:38:13 UTC"."""
    if not stamp:
        return "?"
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


@contextmanager
def reporting(action: str = "", *, stop: bool = False) -> Iterator[None]:
    """Show any failure inside the block with `show_error`; `stop` ends the page.

    Streamlit's own control flow (``st.stop``, ``st.rerun``) derives from
    BaseException and passes through untouched.
    """
    try:
        yield
    except Exception as exc:
        show_error(exc, action)
        if stop:
            st.stop()


# --- cached reads ---------------------------------------------------------------


@st.cache_data(ttl=10, show_spinner=False)
def versions(s: Settings, limit: int = 200) -> list[VersionInfo]:
    """Versions of the model, newest first."""
    return registry.list_versions(s, limit=limit)


@st.cache_data(ttl=5, show_spinner=False)
def aliases(s: Settings) -> dict[str, str]:
    """Alias -> version of the model."""
    return registry.aliases(s)


@st.cache_data(ttl=30, show_spinner=False)
def model_names(s: Settings) -> list[str]:
    """Registered models in the store."""
    return registry.model_names(s)


@st.cache_data(ttl=10, show_spinner=False)
def events(
    s: Settings,
    kinds: tuple[str, ...] = (),
    alias: str | None = None,
    version: str | None = None,
    limit: int = 100,
) -> list[audit.AuditEvent]:
    """Audit events, newest first."""
    return audit.history(s, kinds=kinds, alias=alias, version=version, limit=limit)


@st.cache_data(ttl=3600, show_spinner=False)
def evidence(s: Settings, run_id: str) -> dict[str, Any]:
    """The full evidence of one audit event (events never change)."""
    return audit.load_evidence(s, run_id)


@st.cache_data(ttl=10, show_spinner=False)
def previous_version(s: Settings, alias: str) -> str | None:
    """The version `alias` returns to on rollback (None: no predecessor)."""
    return promotion.previous_version(s, alias)


@st.cache_data(ttl=10, show_spinner=False)
def policy(s: Settings) -> Policy:
    """The gate policy in force."""
    return gates.load_policy(s)


def checks_key(checks_of: Policy) -> str:
    """What measuring depends on: each check's name, kind and options.

    Thresholds are left out on purpose: a check's observed value does not
    depend on them (see core.gates), so saving new thresholds measures nothing
    again.
    """
    return json.dumps(
        [[c.name, c.kind, dict(c.options)] for c in checks_of.checks],
        sort_keys=True,
        default=str,
    )


@st.cache_data(ttl=3600, show_spinner=False, max_entries=2000)
def measurements(
    s: Settings,
    key: str,
    version: str,
    champion: str | None,
    _policy: Policy,
    _info: VersionInfo,
) -> dict[str, Measurement]:
    """Measure every check of `_policy` on one version (the slow part).

    Keyed by `checks_key`, the version and the production version (champion
    checks compare with it), not by the version's tags, which every gate run
    changes.
    """
    del key, version, champion  # cache key only
    return gates.measure(s, _policy, _info)


@st.cache_data(ttl=3600, show_spinner=False)
def sample_records(s: Settings, run_id: str, rows: int = 2) -> list[dict[str, Any]]:
    """A few golden rows of a version's run, as a request body example."""
    xy = artifacts.golden_xy(s, run_id)
    if xy is None:
        return []
    head = xy[0].head(rows).astype(object)
    return head.where(head.notna(), None).to_dict(orient="records")


def stage_backend(s: Settings, stage: Stage) -> deployment.Backend:
    """The backend running `stage`'s server (the one that launched it)."""
    return deployment.backend_for(s, stage)


@st.cache_data(ttl=60, show_spinner=False)
def backend_choice(s: Settings) -> str:
    """Which backend runs the servers, and why."""
    return deployment.describe_choice(s)


@st.cache_data(ttl=2, show_spinner=False)
def server_status(s: Settings, stage: Stage) -> deployment.ServerStatus:
    """The state of one stage's server."""
    return stage_backend(s, stage).status(stage)


@st.cache_data(ttl=2, show_spinner=False)
def server_logs(s: Settings, stage: Stage, lines: int = 80) -> str:
    """The last lines a stage's server wrote."""
    return stage_backend(s, stage).logs(stage, lines=lines)


@st.cache_resource(show_spinner=False)
def _latency_rings() -> dict[str, deque[tuple[datetime, float | None, str]]]:
    return {stage: deque(maxlen=LATENCY_SAMPLES) for stage in STAGES}


@st.cache_data(ttl=2, show_spinner=False)
def probe(s: Settings, stage: Stage) -> probes.ProbeResult:
    """Probe a stage's server (at most every 2 s) and keep the sample."""
    result = probes.probe(s, stage)
    _latency_rings()[stage].append(
        (datetime.now(UTC), result.response_ms, result.light)
    )
    return result


def latency_history(stage: Stage) -> pd.DataFrame:
    """Recent probe samples of a stage: time, response ms and light."""
    ring = list(_latency_rings()[stage])
    return pd.DataFrame(ring, columns=["time", "response_ms", "light"])


def refresh() -> None:
    """Forget cached registry, audit and server reads after a write."""
    for cached in (
        versions,
        aliases,
        model_names,
        events,
        previous_version,
        policy,
        server_status,
        server_logs,
        probe,
    ):
        cached.clear()


# --- background tasks -----------------------------------------------------------


def gate_version(s: Settings, version: str, where: str) -> gates.GateResult | None:
    """Run the real gate on `version` inside a status box; None when it could not run.

    The result is recorded on the version and in the audit log by `core`; the
    caches are dropped so every page shows it.
    """
    with st.status(f"Gating version {version}…", expanded=True) as status:
        try:
            result = gates.evaluate_gate(
                s, version, reason=f"run from the {where} page"
            )
        except Exception as exc:
            status.update(label="The gate could not run", state="error")
            show_error(exc, "The gate")
            return None
        refresh()
        status.update(
            label=f"Version {version}: {result.summary()}",
            state="complete" if result.passed else "error",
        )
    return result


@st.cache_resource(show_spinner=False)
def task_board() -> TaskBoard:
    """The process-wide task board (shared by every session)."""
    return TaskBoard()


def start_task(
    key: str,
    title: str,
    work: Callable[[Callable[[str], None]], Any],
    summarize: Callable[[Any], str] = lambda _r: "",
) -> Task | None:
    """Start a background task; a refusal is kept to show on the next run.

    Meant for `on_click` callbacks, which run before the page is drawn. Returns
    the task, or None when it was refused.
    """
    try:
        task = task_board().start(key, title, settings().actor, work, summarize)
    except StudioError as exc:
        st.session_state[f"task.refused.{key}"] = str(exc)
        return None
    st.session_state.pop(f"task.refused.{key}", None)
    return task


def task_panel(key: str) -> Task | None:
    """Draw the task of `key`: live while it runs, then its outcome.

    While it runs a fragment polls it every second (in the browser; AppTest
    draws it once per run) and reruns the whole page when it ends, so the page
    shows the new registry state.
    """
    refused = st.session_state.pop(f"task.refused.{key}", None)
    if refused:
        st.warning(refused, icon=":material/hourglass_top:")
    task = task_board().get(key)
    hidden = st.session_state.setdefault("task.dismissed", set())
    if task is None or task.id in hidden:
        return task
    if task.running:

        @st.fragment(run_every=1.0)
        def _poll() -> None:
            current = task_board().get(key)
            if current is None or current.id != task.id or not current.running:
                st.rerun(scope="app")
            _draw_task(task)

        _poll()
        return task
    _acknowledge(task)
    _draw_task(task)
    st.button(
        "Dismiss",
        key=f"task.dismiss.{task.id}",
        icon=":material/close:",
        type="tertiary",
        on_click=hidden.add,
        args=(task.id,),
    )
    return task


def acknowledge_finished_tasks() -> None:
    """Drop cached reads for tasks that ended since this session last looked.

    Call it before drawing anything a task may have changed: the task panel
    acknowledges too, but only where it is drawn, after the state above it.
    """
    for task in task_board().finished():
        _acknowledge(task)


def _acknowledge(task: Task) -> None:
    """Refresh cached reads once per session after a task finished."""
    seen = st.session_state.setdefault("task.seen", set())
    if task.id not in seen:
        seen.add(task.id)
        refresh()


def _draw_task(task: Task) -> None:
    """The task's log in a status box; its outcome below, always visible."""
    ended = {"running": "running…", "complete": "done", "error": "failed"}
    # Not used as a context manager: leaving `with st.status(...)` turns a
    # "running" box into "complete", so a running task showed a check mark.
    box = st.status(
        f"{task.title} — {ended[task.state]}",
        state=task.state,
        expanded=task.running,
    )
    box.caption(f"Started by {task.actor} at {task.started_at:%H:%M:%S} UTC")
    lines = "\n".join(list(task.lines)[-40:])
    box.code(readable_times(lines) or "(no progress reported yet)", language=None)
    if task.error:
        first, _, rest = task.error.partition("\n")
        st.error(readable_times(without_cli_hints(first)), icon=ERROR_ICON)
        if rest.strip():
            with st.expander("Details"):
                st.code(rest.strip(), language=None)
    elif task.summary:
        st.success(readable_times(task.summary), icon=":material/check_circle:")


# --- drawing helpers ------------------------------------------------------------


def badge_md(text: str, color: str, icon: str = "") -> str:
    """Markdown for an inline badge (Streamlit's ``:color-badge[...]``)."""
    inner = f"{icon} {text}".strip()
    return f":{color}-badge[{inner}]"


def stage_md(stage: str, version: str | None = None) -> str:
    """Markdown badge for a stage, optionally with the version holding it."""
    text = stage if version is None else f"{stage} · v{version}"
    return badge_md(text, STAGE_COLOR.get(stage, IDLE), STAGE_ICON.get(stage, ""))


def outcome_md(passed: bool | None, label: str) -> str:
    """Markdown badge for a recorded outcome (None: not run yet)."""
    if passed is None:
        return badge_md(f"{label} not run", IDLE, ":material/radio_button_unchecked:")
    if passed:
        return badge_md(f"{label} passed", PASS, ":material/check:")
    return badge_md(f"{label} failed", FAIL, ":material/close:")


def gate_md(info: VersionInfo, policy_digest: str | None) -> str:
    """Markdown badge for the version's gate, amber when it passed an old policy."""
    if info.gate_state(policy_digest) == "stale":
        return badge_md("gate stale", WAIT, ":material/history:")
    return outcome_md(info.gate_passed, "gate")


def stage_badges(held: Mapping[str, str]) -> None:
    """One line of badges: which version holds each stage."""
    parts = [
        stage_md(stage, held.get(stage))
        if held.get(stage)
        else badge_md(f"{stage} · unset", IDLE, STAGE_ICON[stage])
        for stage in STAGES
    ]
    st.markdown(" ".join(parts))


def version_label(info: VersionInfo, policy_digest: str | None = None) -> str:
    """A one-line label for pickers: number, aliases, gate outcome.

    With the digest of the policy in force, a pass under another policy reads
    "gate stale".
    """
    held = f" · {', '.join(info.aliases)}" if info.aliases else ""
    gate = GATE_LABEL[info.gate_state(policy_digest)]
    accuracy = info.metrics.get("accuracy")
    score = f" · acc {accuracy:.3f}" if accuracy is not None else ""
    return f"v{info.version}{held}{gate}{score}"


def version_select(
    label: str,
    infos: Sequence[VersionInfo],
    key: str,
    default: str | None = None,
    policy_digest: str | None = None,
) -> VersionInfo:
    """A version picker whose choice survives reruns and list refreshes."""
    numbers = [i.version for i in infos]
    chosen = st.session_state.get(key)
    if chosen not in numbers:
        chosen = default if default in numbers else numbers[0]
    # Streamlit 1.67 keeps a selectbox's value as its label in the browser and
    # resends it only when the value changes, so a label that changed (gate ✓,
    # a new alias) would stay stale; setting the value each run resends it.
    st.session_state[key] = chosen
    by_number = {i.version: i for i in infos}
    chosen = st.selectbox(
        label,
        numbers,
        key=key,
        format_func=lambda v: version_label(by_number[v], policy_digest),
    )
    return by_number[chosen]


def version_card(info: VersionInfo, policy_digest: str | None = None) -> None:
    """A bordered card: version, where it is, what it is, how it scores.

    `policy_digest` is the policy in force, against which the gate badge says
    whether a pass is stale.
    """
    with st.container(border=True):
        st.markdown(f"**Version {info.version}** of `{info.model_name}`")
        badges = [stage_md(a) for a in info.aliases if a in STAGE_COLOR]
        if not badges:
            badges = [stage_md("candidate")]
        badges += [
            gate_md(info, policy_digest),
            outcome_md(info.smoke_passed, "smoke"),
        ]
        st.markdown(" ".join(badges))
        estimator = info.tags.get("studio.estimator", "?")
        dataset = info.tags.get("studio.dataset", "?")
        st.caption(
            f"{estimator} on {dataset} · registered {info.created_at:%Y-%m-%d %H:%M} "
            f"UTC · run `{info.run_id[:8]}`"
        )
        shown = [m for m in ("accuracy", "f1", "roc_auc") if m in info.metrics]
        if shown:
            for column, metric in zip(st.columns(len(shown)), shown, strict=True):
                column.metric(metric, f"{info.metrics[metric]:.4f}")


def health_light(result: probes.ProbeResult, next_step: str = "") -> None:
    """A stage's live health: coloured light, served version and response time.

    The probe's message is shown under the light (with `next_step`, the page's
    own way to start the server, when none answers), except for a mismatch
    between the served version and the alias, which callers show as a red banner.
    """
    color = LIGHT_COLOR.get(result.light, IDLE)
    label = LIGHT_LABEL.get(result.light, result.light)
    if result.light == "red" and result.reachable and result.matches is False:
        label = "Mismatch"
    served = f"serves v{result.served_version}" if result.served_version else ""
    timing = f"{result.response_ms:.0f} ms" if result.response_ms is not None else ""
    details = " · ".join(p for p in (served, timing) if p)
    st.markdown(
        badge_md(label, color, LIGHT_ICON.get(result.light, ""))
        + (f" {details}" if details else "")
    )
    if result.matches is not False:  # a mismatch gets its own red banner
        message = without_cli_hints(result.message)
        if next_step and not result.reachable:
            message = f"{message}. {next_step}"
        st.caption(message)


def pass_fail_frame(checks: Sequence[CheckResult]) -> pd.DataFrame:
    """Check results as a table: name, outcome, observed vs threshold."""
    return pd.DataFrame(
        [
            {
                "check": c.name,
                "kind": c.kind,
                "result": outcome_text(c),
                "observed": "—" if c.observed is None else f"{c.observed:.4g}",
                "rule": f"{c.op} {c.threshold:.4g}",
                "message": c.message,
            }
            for c in checks
        ]
    )


def outcome_text(check: CheckResult) -> str:
    """ "pass", "fail", or "n/a" for a check that does not apply to the version."""
    if not check.applicable:
        return "n/a"
    return "pass" if check.passed else "fail"


def color_outcome(value: Any) -> str:
    """Cell style for "pass"/"fail" text (used with pandas Styler.map)."""
    if value == "pass":
        return f"background-color: {PASS_BG}; color: {HEX['green']}; font-weight: 600"
    if value == "fail":
        return f"background-color: {FAIL_BG}; color: {HEX['red']}; font-weight: 600"
    if value == "n/a":
        return f"background-color: {IDLE_BG}; color: {HEX['gray']}"
    if value == "stale":
        return f"background-color: {WAIT_BG}; color: {HEX['orange']}; font-weight: 600"
    return ""


def pass_fail_table(checks: Sequence[CheckResult], key: str | None = None) -> None:
    """Draw check results with pass/fail cells coloured."""
    frame = pass_fail_frame(checks)
    styled = frame.style.map(color_outcome, subset=["result"])
    st.dataframe(
        styled,
        hide_index=True,
        key=key,
        column_config={
            "observed": st.column_config.TextColumn(alignment="right"),
            "message": st.column_config.TextColumn("message", width="large"),
        },
    )


def empty_registry_hint(s: Settings) -> None:
    """What to do when the model has no versions yet."""
    st.info(
        f"`{s.model_name}` has no versions yet. Train one on the Train page "
        "(or from the Overview), then come back.",
        icon=":material/info:",
    )
    page_link("pages/train.py", "Train a model", ":material/model_training:")


def page_link(page: str, label: str, icon: str) -> None:
    """A link to another page of the app.

    A page run on its own (``streamlit run pages/x.py``, AppTest) has no
    navigation to link into; it then names the page instead of failing.
    """
    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitPageNotFoundError:
        st.caption(f"{label}: open `{page}` from the app's navigation.")


def sidebar_context() -> None:
    """Where the app points and who acts, at the foot of the sidebar."""
    s = base_settings()
    who = actor(s.actor)
    with st.sidebar:
        st.caption(
            f":material/person: {who}  \n"
            f":material/deployed_code: `{s.model_name}`  \n"
            f":material/database: {s.redacted_tracking_uri()}"
        )
