"""app.py itself: page setup, navigation to every page, the sidebar context."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import Settings

pytestmark = pytest.mark.integration

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ["overview", "runs", "train", "what_if", "promote", "deployments", "audit"]


def test_app_opens_on_the_overview(seeded: Settings) -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()

    assert not at.exception
    assert at.title[0].value == "Promotion Studio"
    assert "page-tests" in at.sidebar.caption[0].value


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_without_an_error(seeded: Settings, page: str) -> None:
    at = AppTest.from_file(APP, default_timeout=180).run()

    at.switch_page(f"pages/{page}.py").run()

    assert not at.exception
    assert not at.error
