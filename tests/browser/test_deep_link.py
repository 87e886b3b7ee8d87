"""A first visit straight to a page URL still goes through app.py's navigation.

Streamlit 1.67 decides on the first session of a process whether the app uses
a legacy ``pages/`` folder; without `pages/_components.py`'s rerun, /promote
would run on its own (no sections, every file of pages/ in the sidebar). This
test needs a fresh app process, which the `studio_app` fixture gives it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import StudioApp
from tests.browser.test_release_path import PAGE_SECONDS, settle

pytestmark = pytest.mark.browser


def test_first_visit_to_a_page_url_uses_the_app_navigation(
    studio_app: StudioApp, browser_page: Any
) -> None:
    page = browser_page
    page.goto(studio_app.url + "/promote")
    settle(page)
    page.get_by_role("heading", name="Promote", exact=True).wait_for(
        timeout=PAGE_SECONDS * 1000
    )
    nav = page.get_by_test_id("stSidebarNav")
    # Each link's text is its icon's ligature name, then its title.
    links = [
        text.strip().splitlines()[-1].strip()
        for text in nav.get_by_role("link").all_inner_texts()
    ]
    assert "Deployments" in links and "Gate what-if" in links, links
    # Legacy multipage would list the helper module and use file names as titles.
    assert not any("components" in text or "what_if" in text for text in links), links
    for section in ("Studio", "Build", "Ship", "Govern"):
        assert nav.get_by_text(section, exact=True).count() == 1, section
