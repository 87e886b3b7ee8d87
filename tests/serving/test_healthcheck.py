"""The image's HEALTHCHECK probe."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, free_port
from tests.serving.conftest import ServingProcess


def probe(port: int) -> int:
    env = os.environ | {"PORT": str(port), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "serving.healthcheck"], env=env, timeout=30, check=False
    ).returncode


@pytest.mark.serving
def test_probe_passes_against_a_ready_server(staging_server: ServingProcess) -> None:
    assert probe(staging_server.port) == 0


def test_probe_fails_when_nothing_listens() -> None:
    assert probe(free_port()) == 1
