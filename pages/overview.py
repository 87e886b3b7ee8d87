"""Overview page (placeholder): which versions hold staging and production."""

import streamlit as st

from core import registry
from core.config import load_settings

st.title("Promotion Studio")
settings = load_settings()
st.write(registry.aliases(settings) or "No aliases yet.")
