"""The app's main path in a real browser: train → gate → staging → production.

Only clicks drive the app; the test then checks the outcome where it really
lives: the aliases in the registry and the production server's /health.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from core import registry
from tests.browser.conftest import ARTIFACTS, StudioApp

pytestmark = pytest.mark.browser

IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
# Tables draw on a canvas after the script run ends: wait until each has its size.
DRAWN = """() => [...document.querySelectorAll("[data-testid='stDataFrame']")]
    .every((table) => table.getBoundingClientRect().width > 120)"""
# greenColor of .streamlit/config.toml (#059669), the colour of a green light.
THEME_GREEN = "5, 150, 105"
PAGE_SECONDS = 60.0
# Training, and a release (launch a server, load the model, smoke-test it),
# take seconds on a laptop and can take minutes on a loaded 2-core CI runner.
JOB_SECONDS = 240.0


@contextmanager
def step(name: str) -> Iterator[None]:
    """Fail with the step's name when anything inside it does not complete."""
    try:
        yield
    except Exception as exc:
        # Playwright's message already names the locator and what it waited for.
        pytest.fail(
            f"step '{name}' did not complete: {type(exc).__name__}: {exc}",
            pytrace=False,
        )


def settle(page: Any, seconds: float = PAGE_SECONDS) -> None:
    """Wait until the script run triggered by the last action has finished."""
    page.wait_for_selector(IDLE, timeout=seconds * 1000)


def see(page: Any, text: str | re.Pattern[str], seconds: float = PAGE_SECONDS) -> Any:
    """Wait for visible text (a string or pattern) and return its locator."""
    found = page.get_by_text(text).filter(visible=True).first
    found.wait_for(state="visible", timeout=seconds * 1000)
    return found


def shoot(page: Any, name: str) -> None:
    """A screenshot of the whole page under test-artifacts/browser/.

    Streamlit scrolls its main area inside the window, so Playwright's
    full-page option would stop at the viewport; the viewport is stretched to
    the content's height for the shot instead.
    """
    settle(page)
    page.wait_for_function(DRAWN)
    viewport = page.viewport_size
    height = page.evaluate(
        "() => document.querySelector(\"[data-testid='stMain']\").scrollHeight"
    )
    page.set_viewport_size({"width": viewport["width"], "height": max(height, 900)})
    try:
        page.wait_for_function(DRAWN)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        page.set_viewport_size(viewport)


def open_page(page: Any, title: str, heading: str) -> None:
    """Follow the sidebar link `title` and wait for the page's heading."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    settle(page)
    page.get_by_role("heading", name=heading, exact=True).wait_for(
        timeout=PAGE_SECONDS * 1000
    )


def light_color(badge: Any) -> str:
    """The RGB part of a badge's background (Streamlit tints the theme colour)."""
    background = badge.evaluate("(e) => getComputedStyle(e).backgroundColor")
    return ", ".join(re.findall(r"\d+", background)[:3])


def stage_panel(page: Any, stage: str) -> Any:
    """The Deployments column of `stage` (the one holding its heading)."""
    heading = page.get_by_role("heading", name=re.compile(rf"^{stage.capitalize()}"))
    return page.get_by_test_id("stColumn").filter(has=heading).first


def test_clicks_take_a_first_model_to_production(
    studio_app: StudioApp, browser_page: Any
) -> None:
    page = browser_page
    with step("open the Overview of an empty store"):
        page.goto(studio_app.url + "/")
        settle(page, 180.0)
        see(page, "Welcome")
        shoot(page, "01-overview-empty")

    with step("train a first model from the Overview"):
        page.get_by_role("button", name="Train a first model").click()
        see(page, "Latest versions", JOB_SECONDS)
        settle(page)
        see(page, "Newest: v1")
        shoot(page, "02-overview-first-version")

    with step("run the gate on version 1 (Promote page)"):
        open_page(page, "Promote", "Promote")
        shoot(page, "03-promote-candidate")
        page.get_by_role("button", name="Run the gate").click()
        see(page, re.compile(r"^passed policy "), JOB_SECONDS)
        shoot(page, "04-promote-gated")

    with step("release version 1 to staging (launch + smoke test)"):
        page.get_by_role("button", name="Release v1 to staging").click()
        see(page, re.compile(r"staging now holds v1 .*smoke passed"), JOB_SECONDS)
        shoot(page, "05-promote-staging")

    with step("release version 1 to production"):
        # Enabled once the page shows the smoke result; click waits for that.
        page.get_by_role("button", name="Release v1 to production").click()
        see(page, re.compile(r"production now holds v1 "), JOB_SECONDS)
        shoot(page, "06-promote-production")

    with step("see both servers healthy on v1 (Deployments page)"):
        open_page(page, "Deployments", "Deployments")
        for stage in ("production", "staging"):
            panel = stage_panel(page, stage)
            light = panel.locator(".stMarkdownBadge", has_text="Healthy").first
            light.wait_for(timeout=PAGE_SECONDS * 1000)
            assert light_color(light) == THEME_GREEN, f"{stage} light is not green"
            panel.get_by_text("serves v1").first.wait_for()
        shoot(page, "07-deployments")

    with step("see the release on the Overview and in the Audit log"):
        open_page(page, "Overview", "Promotion Studio")
        see(page, "Healthy")
        shoot(page, "08-overview-released")
        open_page(page, "Audit", "Audit")
        see(page, re.compile(r"of \d+ loaded events"))
        shoot(page, "09-audit")

    assert registry.aliases(studio_app.settings) == {
        "staging": "1",
        "production": "1",
    }
    port = studio_app.settings.port_for("production")
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    assert (health["stage"], str(health["model_version"])) == ("production", "1")
