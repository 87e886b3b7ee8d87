"""Promotion Studio's Streamlit entry point (placeholder until the app issue lands)."""

import streamlit as st

st.set_page_config(page_title="Promotion Studio", page_icon=":rocket:", layout="wide")
pg = st.navigation([st.Page("pages/overview.py", title="Overview", icon=":material/home:")])
pg.run()
