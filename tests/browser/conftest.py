"""The browser tier: a real `streamlit run app.py` driven by Debian's Chromium.

The app runs as a subprocess on a free loopback port with its own empty
embedded store, the process backend on free ports and a small gate policy
(accuracy >= 0.9). Playwright only drives the browser; it never downloads one.
Without /usr/bin/chromium or the playwright package the tier is skipped with
the reason, and fails instead under STUDIO_REQUIRE_ALL_TIERS=1 (set by .ci/run).

Screenshots go to test-artifacts/browser/ at the repository root; a failed test
also leaves a screenshot of the page it was on and the app's log tail there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.config import STAGES, Settings, load_settings
from tests.conftest import (
    ACCURACY_POLICY,
    REPO_ROOT,
    free_port,
    new_store,
    stop_group,
    write_policy_file,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
APP_START_SECONDS = 180.0
PAGE_TIMEOUT_MS = 60_000
LOG_TAIL_CHARS = 6000
# Variables of a developer's shell that would point the app elsewhere.
FOREIGN_ENV = ("STUDIO_", "MLFLOW_", "GATE_", "ACCURACY_THRESHOLD", "BASE_IMAGE")


def _missing(reason: str) -> None:
    """Skip the tier with `reason`, or fail it when every tier must run."""
    reason = f"browser tier: {reason}"
    if os.environ.get("STUDIO_REQUIRE_ALL_TIERS") == "1":
        pytest.fail(reason)
    print(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium and the playwright package, or a skip that says why."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing; install it with `apt-get install chromium`")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _missing(f"the playwright package is missing ({exc}); pip install it")
    return CHROMIUM


@dataclass(frozen=True)
class StudioApp:
    """A running `streamlit run app.py` and the store it works on."""

    url: str
    env: dict[str, str]
    settings: Settings
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of the app's stdout and stderr."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError as exc:
            return f"(cannot read {self.log}: {exc})"


@pytest.fixture
def studio_app(
    chromium: Path, tmp_path: Path, migrated_db: Path
) -> Iterator[StudioApp]:
    """The app on a free loopback port over an empty store; stopped afterwards.

    Teardown stops the app's process group first (ending its background
    releases), then each stage's model server through the backend that
    launched it, then any training worker still running.
    """
    home = new_store(tmp_path / "studio", migrated_db)
    policy = write_policy_file(tmp_path / "accuracy-policy.toml", ACCURACY_POLICY)
    studio = {
        "STUDIO_HOME": str(home),
        "STUDIO_DEPLOY_BACKEND": "process",
        "STUDIO_STAGING_PORT": str(free_port()),
        "STUDIO_PRODUCTION_PORT": str(free_port()),
        "STUDIO_ACTOR": "browser-test",
        "STUDIO_GATE_POLICY": str(policy),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV)}
    env.update(studio, PYTHONUNBUFFERED="1")
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    log = tmp_path / "streamlit.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    app = StudioApp(
        url=f"http://127.0.0.1:{port}",
        env=studio,
        settings=load_settings(studio),
        process=process,
        log=log,
    )
    try:
        _wait_healthy(app)
        yield app
    finally:
        stop_group(process)
        _stop_servers(app.settings)
        _cancel_jobs(app.settings)
        with contextlib.suppress(OSError):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, ARTIFACTS / "streamlit.log")


def _wait_healthy(app: StudioApp) -> None:
    deadline = time.monotonic() + APP_START_SECONDS
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            pytest.fail(f"streamlit exited early:\n{app.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{app.url}/_stcore/health", timeout=2).status_code == 200:
                return
        time.sleep(0.25)
    pytest.fail(
        f"streamlit did not answer /_stcore/health within {APP_START_SECONDS:.0f} s:"
        f"\n{app.log_tail()}"
    )


def _stop_servers(settings: Settings) -> None:
    """Stop the model servers the app launched (each by its recorded pid)."""
    from core.deployment import backend_for

    for stage in STAGES:
        backend_for(settings, stage).stop(stage)


def _cancel_jobs(settings: Settings) -> None:
    """Cancel training workers a failed test left running (by their pid file)."""
    from core import jobs

    for job in jobs.list_jobs(settings):
        if job.is_active:
            jobs.cancel(settings, job.job_id)


@pytest.fixture
def browser_page(
    studio_app: StudioApp, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A Chromium page at 1440x900; on failure its screenshot and the app log."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            # Clicks wait for their button to be enabled; a loaded runner is slow.
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            yield page
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                _keep_failure(page, studio_app, request.node.name)
        finally:
            browser.close()


def _keep_failure(page: Any, app: StudioApp, name: str) -> None:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", name)
    with contextlib.suppress(Exception):  # a crashed page must not hide the failure
        page.screenshot(path=str(ARTIFACTS / f"FAILED-{stem}.png"), full_page=True)
    tail = app.log_tail()
    (ARTIFACTS / f"FAILED-{stem}.log").write_text(tail, encoding="utf-8")
    print(f"--- streamlit log tail ({app.log}) ---\n{tail}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, so fixtures can see a failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
