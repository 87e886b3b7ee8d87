"""Gate what-if: move the policy's thresholds and see at once which versions pass.

Every version is measured once (cached); moving a slider only re-judges the
stored measurements with `gates.verdict`, so the tables and charts follow the
sliders instantly. Works for any check kind: each kind says its slider range.
"""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core import gates
from core.config import Settings
from core.gates import CHECK_KINDS, CheckSpec, GateResult, Measurement, Policy
from core.registry import VersionInfo
from pages import _components as ui

SWEEP_POINTS = 81
OP_SYMBOL = {">=": "≥", "<=": "≤"}
MAX_DECIMALS = 6


def slider_range(spec: CheckSpec) -> tuple[float, float, float]:
    """The kind's (min, max, step), widened to hold the threshold in force."""
    low, high, step = CHECK_KINDS[spec.kind].slider_range(spec)
    return (
        float(min(low, spec.threshold)),
        float(max(high, spec.threshold)),
        float(step),
    )


def slider_format(*values: float) -> str:
    """A printf format showing as many decimals as the finest of `values` has.

    Given the step (and the threshold in force), so a 0.005 step shows 0.945,
    not the slider's default two decimals ("0.94").
    """
    decimals = [
        -int(Decimal(str(v)).normalize().as_tuple().exponent)
        for v in values
        if math.isfinite(v)
    ]
    return f"%.{min(MAX_DECIMALS, max([0, *decimals]))}f"


def threshold_sliders(in_force: Policy) -> dict[str, float]:
    """One slider per check, starting at the policy's threshold.

    Keys include the policy digest, so a newly saved policy starts fresh.
    """
    prefix = f"whatif.{in_force.digest}."
    for spec in in_force.checks:
        low, high, step = slider_range(spec)
        key = prefix + spec.name
        st.session_state.setdefault(key, float(spec.threshold))
        kind = CHECK_KINDS[spec.kind]
        st.slider(
            f"{spec.name} {OP_SYMBOL[spec.op]}",
            min_value=low,
            max_value=high,
            step=step,
            format=slider_format(step, spec.threshold),
            key=key,
            help=f"{kind.label or spec.kind}. {spec.description} "
            f"Policy in force: {spec.op} {spec.threshold:g}.",
        )

    def reset() -> None:
        for spec in in_force.checks:
            st.session_state[prefix + spec.name] = float(spec.threshold)

    st.button(
        "Reset to the policy in force",
        key="whatif.reset",
        icon=":material/restart_alt:",
        on_click=reset,
    )
    return {
        spec.name: float(st.session_state[prefix + spec.name])
        for spec in in_force.checks
    }


def versions_to_compare(
    infos: list[VersionInfo], held: dict[str, str]
) -> list[VersionInfo]:
    """The newest N versions plus every version holding an alias."""
    count = st.number_input(
        "Newest versions to compare",
        min_value=1,
        max_value=len(infos),
        value=min(20, len(infos)),
        key="whatif.count",
        help="Versions holding staging or production are always included.",
    )
    chosen = infos[: int(count)]
    extra = [i for i in infos[int(count) :] if i.version in held.values()]
    return chosen + extra


def measure_all(
    s: Settings, in_force: Policy, shown: list[VersionInfo], champion: str | None
) -> dict[str, dict[str, Measurement]]:
    """Measure each version with the policy's checks (cached per version)."""
    key = ui.checks_key(in_force)
    bar = st.progress(0.0, text="Measuring versions…")
    measured: dict[str, dict[str, Measurement]] = {}
    for done, info in enumerate(shown, start=1):
        measured[info.version] = ui.measurements(
            s, key, info.version, champion, in_force, info
        )
        bar.progress(done / len(shown), text=f"Measured version {info.version}")
    bar.empty()
    return measured


def verdict_table(
    shown: list[VersionInfo],
    verdicts: dict[str, GateResult],
    before: dict[str, GateResult],
) -> None:
    """Each version: would it pass, does it pass today, what fails, the values."""
    rows, styles = [], []
    for info in shown:
        now, then = verdicts[info.version], before[info.version]
        row = {
            "version": f"v{info.version}",
            "stage": ", ".join(info.aliases) or "candidate",
            "would pass": "pass" if now.passed else "fail",
            "in force": "pass" if then.passed else "fail",
            "fails on": ", ".join(c.name for c in now.failed_checks) or "—",
        }
        style = {k: "" for k in row}
        for check in now.checks:
            row[check.name] = "n/a" if not check.applicable else _number(check.observed)
            style[check.name] = ui.color_outcome(ui.outcome_text(check))
        rows.append(row)
        styles.append(style)
    frame = pd.DataFrame(rows)
    check_names = [c.name for c in verdicts[shown[0].version].checks]
    styled = frame.style.apply(lambda _f: pd.DataFrame(styles), axis=None).map(
        ui.color_outcome, subset=["would pass", "in force"]
    )
    st.dataframe(
        styled,
        hide_index=True,
        key="whatif.table",
        column_config={
            name: st.column_config.TextColumn(alignment="right") for name in check_names
        },
    )


def _number(value: float | None) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.4g}"


def check_heatmap(shown: list[VersionInfo], verdicts: dict[str, GateResult]) -> None:
    """Versions × checks: green passes, red fails, grey does not apply."""
    names = [c.name for c in verdicts[shown[0].version].checks]
    z, text = [], []
    for info in shown:
        checks = verdicts[info.version].checks
        z.append([0.5 if not c.applicable else float(c.passed) for c in checks])
        text.append(
            ["n/a" if not c.applicable else _number(c.observed) for c in checks]
        )
    labels = [
        f"v{i.version}" + (f" · {', '.join(i.aliases)}" if i.aliases else "")
        for i in shown
    ]
    red, grey, green = ui.HEX["red"], "#cbd5e1", ui.HEX["green"]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale=[
                [0, red],
                [0.33, red],
                [0.33, grey],
                [0.67, grey],
                [0.67, green],
                [1, green],
            ],
            zmin=0,
            zmax=1,
            showscale=False,
            xgap=3,
            ygap=3,
            hovertemplate="%{y} · %{x}: %{text}<extra></extra>",
        )
    )
    figure.update_layout(
        height=70 + 36 * len(shown),
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        yaxis={"autorange": "reversed"},
        xaxis={"side": "top"},
    )
    st.markdown("**Which check fails for each version**")
    st.plotly_chart(figure, key="whatif.heatmap")


def sweep_range(spec: CheckSpec, observed: list[float]) -> tuple[float, float]:
    """The part of the slider range where the count of passing versions moves.

    Metric thresholds live in [0, 1] but versions cluster near the top; the
    interesting stretch is around the observed values and the threshold.
    """
    low, high, step = slider_range(spec)
    if not observed:
        return low, high
    near = [*observed, spec.threshold]
    span = max(max(near) - min(near), 20 * step)
    return max(low, min(near) - span / 2), min(high, max(near) + span / 2)


def sweep_chart(
    adjusted: Policy,
    in_force: Policy,
    shown: list[VersionInfo],
    measured: dict[str, dict[str, Measurement]],
    verdicts: dict[str, GateResult],
) -> None:
    """For each check: versions passing as its threshold sweeps, others held."""
    checks = adjusted.checks
    columns = min(3, len(checks))
    rows = math.ceil(len(checks) / columns)
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[f"{c.name} {OP_SYMBOL[c.op]}" for c in checks],
        vertical_spacing=0.3 / rows,
        horizontal_spacing=0.06,
    )
    for index, spec in enumerate(checks):
        values = {
            i.version: measured[i.version].get(spec.name, Measurement(None, "not run"))
            for i in shown
        }
        observed = [m.observed for m in values.values() if m.observed is not None]
        low, high = sweep_range(in_force.check(spec.name), observed)
        xs = np.linspace(low, high, SWEEP_POINTS)
        others = {
            v: all(c.passed for c in verdicts[v].checks if c.name != spec.name)
            for v in verdicts
        }
        ys = [
            sum(
                others[v] and gates.judge(replace(spec, threshold=float(x)), m).passed
                for v, m in values.items()
            )
            for x in xs
        ]
        row, col = index // columns + 1, index % columns + 1
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"shape": "hv", "color": ui.HEX["blue"], "width": 2},
                fill="tozeroy",
                fillcolor="rgba(79,70,229,0.08)",
                name=spec.name,
                hovertemplate="threshold %{x:.4g}: %{y} passing<extra></extra>",
            ),
            row=row,
            col=col,
        )
        figure.add_vline(
            x=in_force.check(spec.name).threshold,
            line={"color": ui.HEX["gray"], "dash": "dot", "width": 2},
            row=row,
            col=col,
        )
        figure.add_vline(
            x=spec.threshold,
            line={"color": ui.HEX["orange"], "width": 2},
            row=row,
            col=col,
        )
    figure.update_yaxes(
        range=[0, len(shown) + 0.3], dtick=max(1, len(shown) // 4), title_text=""
    )
    for row in range(1, rows + 1):
        figure.update_yaxes(title_text="passing", row=row, col=1)
    figure.update_layout(
        height=230 * rows,
        showlegend=False,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
    )
    st.plotly_chart(figure, key="whatif.sweep")
    st.caption(
        "Orange: the slider's threshold; dotted grey: the policy in force. Other "
        "checks are held at their slider values."
    )


def production_fares(
    held: dict[str, str], verdicts: dict[str, GateResult], before: dict[str, GateResult]
) -> None:
    """How the production version does under the slider thresholds."""
    version = held.get("production")
    with st.container(border=True):
        if version is None or version not in verdicts:
            st.markdown(ui.stage_md("production") + " no version holds production yet.")
            return
        now, then = verdicts[version], before[version]
        outcome = (
            ui.badge_md("would pass", ui.PASS, ":material/check:")
            if now.passed
            else ui.badge_md("would fail", ui.FAIL, ":material/close:")
        )
        st.markdown(f"{ui.stage_md('production', version)} {outcome}")
        if not now.passed:
            st.caption("Fails on: " + "; ".join(c.message for c in now.failed_checks))
        if now.passed != then.passed:
            st.caption(
                f"Under the policy in force it {'passes' if then.passed else 'fails'}."
            )


def run_gate(s: Settings, infos: list[VersionInfo], in_force: Policy) -> None:
    """Run the real gate on a version: measure, record evidence, audit."""
    with st.container(border=True):
        st.markdown("**Run the gate for real**")
        st.caption(
            f"Uses the policy in force ({in_force.digest}), records the result on "
            "the version and in the audit log. Save slider values first to gate "
            "with them."
        )
        info = ui.version_select(
            "Version to gate",
            infos,
            key="whatif.gate_version",
            policy_digest=in_force.digest,
        )
        clicked = st.button(
            f"Run the gate on v{info.version}",
            key="whatif.run_gate",
            icon=":material/play_arrow:",
            type="primary",
        )
        if clicked:
            result = ui.gate_version(s, info.version, "what-if")
            if result is None:
                return
            st.session_state["whatif.last_gate"] = result
        last: GateResult | None = st.session_state.get("whatif.last_gate")
        if last is not None:
            st.markdown(
                f"Last gate run here: v{last.version} "
                + ui.outcome_md(last.passed, "gate")
            )
            ui.pass_fail_table(last.checks, key="whatif.last_gate_table")


def save_policy(s: Settings, in_force: Policy, adjusted: Policy) -> None:
    """Save the slider thresholds as the policy, with who and why."""
    with st.container(border=True):
        st.markdown("**Save these thresholds as the policy**")
        changed = [
            f"{c.name} {c.op} {in_force.check(c.name).threshold:g} → {c.threshold:g}"
            for c in adjusted.checks
            if c.threshold != in_force.check(c.name).threshold
        ]
        st.caption(
            "Changes: " + "; ".join(changed)
            if changed
            else "No threshold differs from the policy in force yet."
        )
        reason = st.text_input(
            "Why (recorded in the audit log)",
            key="whatif.reason",
            placeholder="e.g. raise the accuracy bar after the Q3 review",
        )
        missing = None
        if not changed:
            missing = "Move a slider first."
        elif not reason.strip():
            missing = "Write why first; it is recorded in the audit log."
        st.button(
            "Save as policy",
            key="whatif.save",
            icon=":material/save:",
            disabled=missing is not None,
            help=missing,
            on_click=_save,
            args=(s, adjusted),
        )
        outcome = st.session_state.pop("whatif.saved", None)
        if isinstance(outcome, Exception):
            ui.show_error(outcome, "Saving the policy")
        elif outcome:
            st.success(outcome, icon=":material/check_circle:")


def _save(s: Settings, adjusted: Policy) -> None:
    """Button callback: save the policy before the page redraws.

    Saving in the callback lets the page draw the new policy at once: fresh
    sliders, no "Changes:" left over and an empty reason (a widget's value
    cannot be reset once it is drawn in a run).
    """
    try:
        path = gates.save_policy(s, adjusted, st.session_state.get("whatif.reason", ""))
    except Exception as exc:  # shown on the redraw, with the usual next step
        st.session_state["whatif.saved"] = exc
        return
    ui.refresh()
    st.session_state["whatif.reason"] = ""
    st.session_state["whatif.saved"] = (
        f"Saved policy {adjusted.digest} to `{path}` as {s.actor}. Versions gated "
        "under the old policy need the gate again before promotion."
    )


s = ui.settings()
st.title("Gate what-if")
st.caption(
    "Move a threshold and see at once which versions would pass. Versions are "
    "measured once; moving a slider only re-judges."
)

with ui.reporting("Loading the policy and versions", stop=True):
    in_force = ui.policy(s)
    infos = ui.versions(s)
    held = ui.aliases(s)
if not infos:
    ui.empty_registry_hint(s)
    st.stop()

controls, results = st.columns([1, 2.6], gap="large")
with controls, st.container(border=True):
    st.markdown("**Thresholds**")
    thresholds = threshold_sliders(in_force)
    shown = versions_to_compare(infos, held)

with ui.reporting("Measuring versions", stop=True):
    measured = measure_all(s, in_force, shown, held.get("production"))
adjusted = in_force.with_thresholds(thresholds)
verdicts = {i.version: gates.verdict(adjusted, i, measured[i.version]) for i in shown}
before = {i.version: gates.verdict(in_force, i, measured[i.version]) for i in shown}

with results:
    passing = sum(v.passed for v in verdicts.values())
    passing_before = sum(v.passed for v in before.values())
    left, right = st.columns([1, 2])
    left.metric(
        "Versions that would pass",
        f"{passing} of {len(shown)}",
        delta=passing - passing_before or None,
        help=f"{passing_before} pass under the policy in force.",
        border=True,
    )
    with right:
        production_fares(held, verdicts, before)
    verdict_table(shown, verdicts, before)
    check_heatmap(shown, verdicts)

st.subheader("Versions passing vs each threshold")
sweep_chart(adjusted, in_force, shown, measured, verdicts)

gate_column, save_column = st.columns(2, gap="large")
with gate_column:
    run_gate(s, infos, in_force)
with save_column:
    save_policy(s, in_force, adjusted)
