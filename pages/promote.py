"""Promote: one version through candidate → gate → staging → smoke → production.

Each step shows its state and evidence; the buttons run the next step. Moving
an alias is a release (`core.rollout`): the alias moves, that stage's server
(re)starts on the new version and is smoke-tested. Releases run as background
tasks, and pass the alias version this page showed as `expected`, so a move
made meanwhile by someone else is reported instead of overwritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import streamlit as st

from core import gates, promotion, rollout, tags
from core.config import STAGES, Settings, Stage
from core.promotion import Precondition
from core.registry import VersionInfo
from core.tasks import Task
from pages import _components as ui

CARD_TEXT = 160
CARD_CHECKS = 3
# A gate summary is "FAIL: " and each failed check's message joined by "; "; a
# message starts with the check's name (see core.gates.judge).
_NEXT_FAILURE = re.compile(r"; (?=[\w.-]+(?: \S+ fails | *: not measured))")


@dataclass(frozen=True)
class Step:
    """One box of the pipeline row."""

    title: str
    state: str  # done | failed | stale | waiting
    evidence: str


STATE_STYLE = {
    "done": (ui.PASS, ":material/check_circle:", "done"),
    "failed": (ui.FAIL, ":material/cancel:", "failed"),
    "stale": (ui.WAIT, ":material/history:", "stale"),
    "waiting": (ui.IDLE, ":material/radio_button_unchecked:", "to do"),
}


def pipeline(
    info: VersionInfo, held: dict[str, str], gate_rule: Precondition
) -> list[Step]:
    """The five steps of `info`, read from its tags and the aliases."""
    t = info.tags
    by = t.get(tags.RUN_ACTOR, "")
    steps = [
        Step(
            "Candidate",
            "done",
            f"registered {info.created_at:%Y-%m-%d %H:%M} UTC"
            + (f" by {by}" if by else "")
            + f" · run {info.run_id[:8]}",
        )
    ]
    if info.gate_passed is None:
        steps.append(Step("Gate", "waiting", "no gate result yet"))
    elif not info.gate_passed:
        steps.append(Step("Gate", "failed", f"failed on {failed_names(info)}"))
    else:
        evidence = (
            f"passed policy {t.get(tags.GATE_POLICY_DIGEST, '?')} · "
            f"{ui.when(t.get(tags.GATE_AT))} by {t.get(tags.GATE_BY, '?')}"
        )
        steps.append(
            Step("Gate", "done", evidence)
            if gate_rule.ok
            else Step("Gate", "stale", gate_rule.detail)
        )
    steps.append(_alias_step("Staging", "staging", info, held))
    if info.smoke_passed is None:
        steps.append(
            Step("Smoke", "waiting", "runs when the version is released to staging")
        )
    elif info.smoke_passed:
        steps.append(
            Step(
                "Smoke",
                "done",
                f"passed on {t.get(tags.SMOKE_STAGE, '?')} · p50 "
                f"{t.get(tags.SMOKE_P50_MS, '?')} ms · p95 "
                f"{t.get(tags.SMOKE_P95_MS, '?')} ms",
            )
        )
    else:
        steps.append(Step("Smoke", "failed", t.get(tags.SMOKE_DETAIL, "failed")))
    steps.append(_alias_step("Production", "production", info, held))
    return steps


def gate_failures(info: VersionInfo) -> list[str]:
    """The messages of the checks the version's recorded gate failed on."""
    summary = info.tags.get(tags.GATE_SUMMARY, "").removeprefix("FAIL: ").strip()
    return _NEXT_FAILURE.split(summary) if summary else []


def failed_names(info: VersionInfo) -> str:
    """The failed checks' names, the first few only: "accuracy, f1 +2 more"."""
    names = [m.split(" ", 1)[0].rstrip(":") for m in gate_failures(info)]
    if not names:
        return "a check (no summary recorded)"
    shown = ", ".join(names[:CARD_CHECKS])
    hidden = len(names) - CARD_CHECKS
    return shown + (f" +{hidden} more" if hidden > 0 else "")


def _alias_step(
    title: str, alias: str, info: VersionInfo, held: dict[str, str]
) -> Step:
    if held.get(alias) == info.version:
        at = ui.when(info.tags.get(tags.moved(alias, "at")))
        by = info.tags.get(tags.moved(alias, "by"), "?")
        return Step(title, "done", f"holds {alias} since {at} by {by}")
    other = held.get(alias)
    where = f"{alias} holds v{other}" if other else f"{alias} is unset"
    return Step(title, "waiting", where)


def draw_pipeline(steps: list[Step]) -> None:
    """The steps as a row of cards joined by arrows."""
    widths = [1.0, 0.12] * (len(steps) - 1) + [1.0]
    cells = st.columns(widths, vertical_alignment="center", gap="small")
    for index, step in enumerate(steps):
        color, icon, word = STATE_STYLE[step.state]
        with cells[2 * index].container(border=True, height="stretch"):
            st.markdown(f"**{step.title}**")
            st.markdown(ui.badge_md(word, color, icon))
            # Long evidence (a smoke failure's detail) would stretch every card of
            # the row; the whole text is in the "Needs" line under the buttons.
            text = step.evidence
            st.caption(text if len(text) <= CARD_TEXT else text[: CARD_TEXT - 1] + "…")
        if index < len(steps) - 1:
            cells[2 * index + 1].markdown(":gray[:material/arrow_forward:]")


def reason_key(version: str) -> str:
    """The reason field of one version: a reason never carries over to another."""
    return f"promote.reason.{version}"


def override_key(version: str) -> str:
    """The override reason field of one version."""
    return f"promote.override_reason.{version}"


def start_release(
    s: Settings, version: str, stage: Stage, expected: str | None, override: str = ""
) -> None:
    """Button callback: release `version` to `stage` in the background."""
    reason = st.session_state.get(reason_key(version), "")

    def work(progress: Any) -> Any:
        return rollout.release(
            s,
            version,
            stage,
            expected=expected,
            reason=reason,
            override_reason=override,
            progress=progress,
        )

    title = f"Release v{version} to {stage}"
    task = ui.start_task(stage, title, work, describe_release)
    if task is not None:
        used = st.session_state.setdefault("promote.used_reasons", {})
        used[task.id] = [reason_key(version), override_key(version)]


def forget_used_reasons(tasks: list[Task | None]) -> None:
    """Empty the reason fields a release used, once that release succeeded.

    Runs before the fields are drawn: a widget's value cannot be set after it
    is drawn in the same run. A failed release keeps them for another try.
    """
    used: dict[str, list[str]] = st.session_state.setdefault("promote.used_reasons", {})
    for task in tasks:
        if task is None or task.running or task.id not in used:
            continue
        for key in used.pop(task.id):
            if task.state == "complete" and key in st.session_state:
                st.session_state[key] = ""


def start_rollback(s: Settings, stage: Stage, current: str, target: str) -> None:
    """Button callback: roll `stage` back in the background."""
    reason = st.session_state.get(f"promote.rollback_reason.{stage}", "")
    st.session_state.pop("promote.confirm", None)

    def work(progress: Any) -> Any:
        return rollout.rollback_release(
            s,
            stage,
            expected=current,
            reason=reason,
            progress=progress,
        )

    ui.start_task(stage, f"Roll back {stage} to v{target}", work, describe_release)


def describe_release(result: rollout.ReleaseResult) -> str:
    """One sentence on what a release or rollback did."""
    move = result.move
    if move.previous == move.version:
        text = f"redeployed v{move.version} on {move.alias}"
    else:
        text = (
            f"{move.alias} now holds v{move.version} "
            f"(was {'v' + move.previous if move.previous else 'unset'})"
        )
    if result.probe is not None:
        text += f"; the server reports v{result.probe.served_version}"
    if result.smoke is not None:
        verdict = "passed" if result.smoke.passed else "FAILED"
        text += f"; smoke {verdict} (p95 {result.smoke.p95_ms:.0f} ms)"
    return text + "."


NEXT_STEP = {
    "gate passed": "run the gate",
    "smoke passed": "release it to staging, which runs the smoke test",
}
GATE_FAILED_STEP = "train a better version, or release this one with an override below"


def needs(info: VersionInfo, rules: list[Precondition]) -> str:
    """What a disabled button waits for, and the step on this page that helps.

    Core's details end with CLI hints (``python -m core …``); here the button
    to press is next to the message, so those hints are left out. A failed
    gate names its failed checks only; the messages are in one expander.
    """
    parts = []
    for rule in rules:
        if rule.ok:
            continue
        if rule.name == "gate passed" and info.gate_passed is False:
            parts.append(
                f"{rule.name}: the gate failed on {failed_names(info)} → "
                + GATE_FAILED_STEP
            )
            continue
        said = ui.without_cli_hints(rule.detail)
        step = NEXT_STEP.get(rule.name, "")
        if step and step not in said:
            said += f" → {step}"
        parts.append(f"{rule.name}: {said}")
    return "  \n".join(parts)


def actions(
    s: Settings,
    info: VersionInfo,
    held: dict[str, str],
    to_staging: list[Precondition],
    to_production: list[Precondition],
) -> None:
    """Buttons for the next steps, each disabled with the reason it cannot run."""
    busy = {stage: _busy(stage) for stage in STAGES}
    gate_col, staging_col, production_col = st.columns(3)
    with gate_col:
        run_gate = st.button(
            "Run the gate",
            key="promote.gate",
            icon=":material/fact_check:",
            type="primary" if info.gate_passed is None else "secondary",
            width="stretch",
        )
    targets: list[tuple[Any, Stage, list[Precondition]]] = [
        (staging_col, "staging", to_staging),
        (production_col, "production", to_production),
    ]
    for column, stage, rules in targets:
        blocked = needs(info, rules)
        already = held.get(stage) == info.version
        with column:
            st.button(
                f"Release v{info.version} to {stage}"
                if not already
                else f"Redeploy {stage} (v{info.version})",
                key=f"promote.to.{stage}",
                icon=":material/rocket_launch:",
                type="primary" if not blocked and not already else "secondary",
                disabled=bool(blocked) or busy[stage],
                help=blocked or None,
                on_click=start_release,
                args=(s, info.version, stage, held.get(stage)),
                width="stretch",
            )
            if busy[stage]:
                st.caption(f"A task on {stage} is running.")
            elif blocked:
                st.caption(f":red[:material/block:] **Needs**  \n{blocked}")
    if run_gate:
        result = ui.gate_version(s, info.version, "Promote")
        if result is None:
            return
        st.session_state["promote.last_gate"] = result
        st.rerun()  # redraw the pipeline with the recorded result
    gate_details(info, st.session_state.get("promote.last_gate"))


def gate_details(info: VersionInfo, last: gates.GateResult | None) -> None:
    """The one place showing a failed gate's full messages (or the last run's)."""
    if last is not None and last.version == info.version:
        verdict = (
            "passed"
            if last.passed
            else "failed on " + ", ".join(c.name for c in last.failed_checks)
        )
        with st.expander(f"Last gate run here: {verdict}", expanded=not last.passed):
            ui.pass_fail_table(last.checks, key="promote.gate_table")
    elif info.gate_passed is False:
        with st.expander(f"Why version {info.version} failed the gate"):
            st.markdown("\n".join(f"- {m}" for m in gate_failures(info)))


def _busy(stage: Stage) -> bool:
    task = ui.task_board().get(stage)
    return task is not None and task.running


def override_form(s: Settings, info: VersionInfo, held: dict[str, str]) -> None:
    """Promote despite failed preconditions, with a required reason."""
    with st.expander("Promote despite a failed precondition", icon=":material/gavel:"):
        stage = st.radio("Stage", STAGES, horizontal=True, key="promote.override_stage")
        why = st.text_area(
            "Override reason (required; recorded with the move)",
            key=override_key(info.version),
            placeholder="e.g. hotfix approved by the on-call lead, ticket OPS-123",
        )
        st.button(
            f"Release v{info.version} to {stage} with override",
            key="promote.override",
            icon=":material/warning:",
            disabled=not why.strip() or _busy(stage),
            help=None if why.strip() else "Write the reason first.",
            on_click=start_release,
            args=(s, info.version, stage, held.get(stage), why.strip()),
        )


def rollback_panel(s: Settings, held: dict[str, str]) -> None:
    """Return a stage to its previous version, after a confirmation."""
    order: tuple[Stage, ...] = ("production", "staging")
    for column, stage in zip(st.columns(2), order, strict=True):
        with column, st.container(border=True):
            current = held.get(stage)
            st.markdown(ui.stage_md(stage, current) if current else ui.stage_md(stage))
            if current is None:
                st.caption(f"{stage} is unset; nothing to roll back.")
                continue
            with ui.reporting(f"Reading the history of {stage}"):
                target = ui.previous_version(s, stage)
                if target is None:
                    st.caption(f"v{current} has no recorded predecessor on {stage}.")
                    continue
                _rollback_confirm(s, stage, current, target)


def _rollback_confirm(s: Settings, stage: Stage, current: str, target: str) -> None:
    confirming = st.session_state.get("promote.confirm") == stage
    if not confirming:
        st.button(
            f"Roll back {stage} to v{target}…",
            key=f"promote.rollback.{stage}",
            icon=":material/undo:",
            disabled=_busy(stage),
            on_click=st.session_state.__setitem__,
            args=("promote.confirm", stage),
        )
        return
    st.warning(
        f"This moves {stage} from v{current} back to v{target} and restarts its "
        "server on it.",
        icon=":material/undo:",
    )
    reason = st.text_input(
        "What went wrong? (required)", key=f"promote.rollback_reason.{stage}"
    )
    confirm, cancel = st.columns(2)
    confirm.button(
        f"Confirm rollback to v{target}",
        key=f"promote.rollback_confirm.{stage}",
        type="primary",
        disabled=not reason.strip(),
        on_click=start_rollback,
        args=(s, stage, current, target),
        width="stretch",
    )
    cancel.button(
        "Cancel",
        key=f"promote.rollback_cancel.{stage}",
        on_click=st.session_state.pop,
        args=("promote.confirm", None),
        width="stretch",
    )


s = ui.settings()
ui.acknowledge_finished_tasks()
st.title("Promote")
st.caption(
    "Candidate → gate → staging → smoke → production. Releasing to a stage moves "
    "its alias, (re)starts its server on the version and smoke-tests it."
)

with ui.reporting("Reading the registry", stop=True):
    infos = ui.versions(s)
    held = ui.aliases(s)
if not infos:
    ui.empty_registry_hint(s)
    st.stop()

forget_used_reasons([ui.task_panel(stage) for stage in STAGES])

with ui.reporting("Reading the gate policy", stop=True):
    in_force = ui.policy(s).digest
picker, card = st.columns([1, 2], gap="large")
with picker:
    info = ui.version_select(
        "Version", infos, key="promote.version", policy_digest=in_force
    )
    ui.stage_badges(held)
with card:
    ui.version_card(info, policy_digest=in_force)

with ui.reporting("Checking preconditions", stop=True):
    to_staging = promotion.preconditions(s, info, "staging")
    to_production = promotion.preconditions(s, info, "production")

draw_pipeline(pipeline(info, held, to_staging[0]))

st.text_input(
    "Reason for the move (recorded in the audit log)",
    key=reason_key(info.version),
    placeholder="e.g. better recall on the March data",
)
actions(s, info, held, to_staging, to_production)
override_form(s, info, held)

st.subheader("Roll back")
rollback_panel(s, held)
