"""Audit: every recorded alias move, gate decision and policy change.

Filter by kind, alias, version, actor and date; pick an event to read its full
evidence; export what the filters show as CSV.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from core.audit import EVENT_KINDS, AuditEvent
from core.config import STAGES, Settings
from pages import _components as ui

LIMITS = (100, 500, 2000, 10000)


@dataclass(frozen=True)
class Query:
    """What the filter row asks the audit log for."""

    kinds: tuple[str, ...]
    alias: str | None
    version: str | None
    limit: int


def filters() -> Query:
    """The filter row that narrows the query itself."""
    kinds, alias, version, limit = st.columns([2, 1, 1, 1])
    chosen_kinds = kinds.multiselect(
        "Kinds", EVENT_KINDS, key="audit.kinds", placeholder="All kinds"
    )
    chosen_alias = alias.selectbox("Alias", ("any", *STAGES), key="audit.alias")
    chosen_version = version.text_input(
        "Version", key="audit.version", placeholder="any"
    ).strip()
    chosen_limit = limit.selectbox(
        "Load at most", LIMITS, key="audit.limit", help="Newest events first."
    )
    return Query(
        kinds=tuple(chosen_kinds),
        alias=None if chosen_alias == "any" else chosen_alias,
        version=chosen_version or None,
        limit=int(chosen_limit),
    )


def narrow(found: list[AuditEvent]) -> list[AuditEvent]:
    """Actor and date filters, applied to the loaded events."""
    actors = sorted({e.actor for e in found if e.actor})
    who, when = st.columns([2, 2])
    chosen = who.multiselect("Actors", actors, key="audit.actors", placeholder="Anyone")
    today = datetime.now(UTC).date()
    oldest = min((e.at.date() for e in found), default=today)
    span = when.date_input(
        "Dates",
        value=(min(oldest, today - timedelta(days=1)), today),
        key="audit.dates",
    )
    start, end = (
        (span[0], span[-1]) if isinstance(span, tuple) and span else (oldest, today)
    )
    return [
        e
        for e in found
        if (not chosen or e.actor in chosen) and start <= e.at.date() <= end
    ]


def table(shown: list[AuditEvent]) -> pd.DataFrame:
    """The events as rows (evidence as compact JSON for the CSV)."""
    return pd.DataFrame(
        [
            {
                "at": e.at.strftime("%Y-%m-%d %H:%M:%S"),
                "kind": e.kind,
                "alias": e.alias or "",
                "version": e.version or "",
                "from": e.from_version or "",
                "outcome": e.outcome,
                "actor": e.actor,
                "reason": e.reason,
                "override": e.override,
                "run_id": e.run_id,
                "evidence": json.dumps(e.evidence, default=str, sort_keys=True),
            }
            for e in shown
        ],
        columns=[
            "at",
            "kind",
            "alias",
            "version",
            "from",
            "outcome",
            "actor",
            "reason",
            "override",
            "run_id",
            "evidence",
        ],
    )


def outcome_style(value: str) -> str:
    """Colour passed/failed outcomes like everywhere else in the app."""
    return ui.color_outcome({"passed": "pass", "failed": "fail"}.get(value, ""))


def evidence_view(s: Settings, shown: list[AuditEvent]) -> None:
    """Pick one event and read its full evidence artifact."""
    labels = {
        e.run_id: f"{e.at:%Y-%m-%d %H:%M:%S} · {e.kind}"
        + (f" {e.alias}" if e.alias else "")
        + (f" v{e.version}" if e.version else "")
        + f" · {e.actor}"
        for e in shown
    }
    chosen = st.selectbox(
        "Event", list(labels), key="audit.event", format_func=labels.__getitem__
    )
    event = next(e for e in shown if e.run_id == chosen)
    head = ui.badge_md(event.kind, ui.IDLE, ui.EVENT_ICON.get(event.kind, ""))
    if event.outcome in ("passed", "failed"):
        head += " " + ui.outcome_md(event.outcome == "passed", event.kind)
    st.markdown(head + f" by **{event.actor}** at {event.at:%Y-%m-%d %H:%M:%S} UTC")
    if event.reason:
        st.markdown(f"Reason: {event.reason}")
    if event.override:
        st.warning(f"Override: {event.override}", icon=":material/gavel:")
    with ui.reporting("Loading the evidence"):
        full = ui.evidence(s, event.run_id)
        checks = full.get("checks") if event.kind == "gate" else None
        if checks:
            st.dataframe(
                pd.DataFrame(checks).style.map(
                    lambda v: ui.color_outcome(
                        "pass" if v is True else "fail" if v is False else ""
                    ),
                    subset=["passed"],
                ),
                hide_index=True,
                key="audit.checks",
            )
        st.json(full or {"evidence": "none recorded"}, expanded=1)


s = ui.settings()
st.title("Audit")
st.caption(
    "Every alias move, gate decision, smoke test and policy change, newest first, "
    "with who did it, why, and the evidence."
)

query = filters()
with ui.reporting("Reading the audit log", stop=True):
    found = ui.events(
        s,
        kinds=query.kinds,
        alias=query.alias,
        version=query.version,
        limit=query.limit,
    )
shown = narrow(found)

frame = table(shown)
head, export = st.columns([4, 1], vertical_alignment="bottom")
head.markdown(f"**{len(shown)}** of {len(found)} loaded events")
export.download_button(
    "Export CSV",
    frame.to_csv(index=False).encode(),
    file_name=f"{s.model_name}-audit.csv",
    mime="text/csv",
    icon=":material/download:",
    key="audit.export",
    disabled=frame.empty,
    width="stretch",
)
if frame.empty:
    st.info("No events match these filters.", icon=":material/filter_alt_off:")
    st.stop()

st.dataframe(
    frame.drop(columns=["evidence"]).style.map(outcome_style, subset=["outcome"]),
    hide_index=True,
    key="audit.table",
    column_config={
        "reason": st.column_config.TextColumn(width="medium"),
        "run_id": st.column_config.TextColumn("audit run", width="small"),
    },
)

st.subheader("Evidence")
evidence_view(s, shown)
