"""Promotion Studio's Streamlit entry point: page setup and navigation only.

Run it with ``streamlit run app.py`` from the repository root (where
``.streamlit/config.toml`` sets the theme). Each page lives in ``pages/``;
shared pieces are in ``pages/_components.py``; every decision is in ``core``.
"""

import logging

import streamlit as st

from core.tracking import fail_fast_over_http
from pages import _components as ui

fail_fast_over_http()

# Streamlit configures only its own logger; this gives core's INFO lines (version
# promoted, server up, gate failed) and the pages' tracebacks a place to go.
logging.basicConfig(
    level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
)
# httpx logs every request at INFO, and the pages probe each server's /health
# every few seconds; only their warnings belong in the app's log.
for chatty in ("httpx", "httpcore"):
    logging.getLogger(chatty).setLevel(logging.WARNING)

st.set_page_config(
    page_title="Promotion Studio",
    page_icon=":material/rocket_launch:",
    layout="wide",
    initial_sidebar_state="expanded",
)

pg = st.navigation(
    {
        "Studio": [
            st.Page(
                "pages/overview.py",
                title="Overview",
                icon=":material/space_dashboard:",
                default=True,
            ),
        ],
        "Build": [
            st.Page("pages/runs.py", title="Runs", icon=":material/table_chart:"),
            st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
            st.Page("pages/what_if.py", title="Gate what-if", icon=":material/tune:"),
        ],
        "Ship": [
            st.Page(
                "pages/promote.py", title="Promote", icon=":material/rocket_launch:"
            ),
            st.Page("pages/deployments.py", title="Deployments", icon=":material/dns:"),
        ],
        "Govern": [
            st.Page("pages/audit.py", title="Audit", icon=":material/receipt_long:"),
        ],
    }
)
ui.sidebar_context()
pg.run()
