"""Deployable models and real servers launched on them, for the serving tests.

`store` gives each test module its own model on the session store (see
tests/conftest.py): versions 1 and 2 are the session's trained runs,
registered again, gated under the accuracy policy, version 1 on staging. The
module also gets its own data directory (server records and logs), free
loopback ports for both stages and the process backend. `staging` launches the
staging server once per module and stops it afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import gates, promotion
from core.config import Settings, load_settings
from core.deployment import ProcessBackend, ServerStatus
from core.deployment.processes import group_exists
from tests.conftest import (
    ACCURACY_POLICY,
    Trained,
    free_port,
    register_runs,
    write_policy_file,
)


@dataclass(frozen=True)
class Store:
    """Settings of a module's model, the environment behind them, its versions."""

    settings: Settings
    env: dict[str, str]
    versions: tuple[str, ...]


def server_env(root: Path) -> dict[str, str]:
    """Data directory, free ports and the process backend for servers in tests."""
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    staging, production, tracking = sorted(ports)
    return {
        "STUDIO_HOME": str(root),
        "STUDIO_STAGING_PORT": str(staging),
        "STUDIO_PRODUCTION_PORT": str(production),
        "STUDIO_TRACKING_PORT": str(tracking),
        "STUDIO_DEPLOY_BACKEND": "process",
        "STUDIO_ACTOR": "tests",
    }


def make_store(root: Path, trained: Trained, env: dict[str, str]) -> Store:
    """Register session runs 1 and 3 as versions 1 and 2, gate both, stage 1."""
    root.mkdir(parents=True, exist_ok=True)
    policy = write_policy_file(root / "accuracy-policy.toml", ACCURACY_POLICY)
    env = {
        **env,
        "MLFLOW_TRACKING_URI": trained.settings.tracking_uri,
        "STUDIO_ARTIFACT_ROOT": str(trained.settings.artifact_root),
        "STUDIO_MODEL_NAME": f"deploy-{time.monotonic_ns() % 10**12}",
        "STUDIO_GATE_POLICY": str(policy),
    }
    settings = load_settings(env)
    versions = register_runs(settings, trained, ("1", "3"))
    for version in versions:
        assert gates.evaluate_gate(settings, version).passed
    promotion.promote(settings, versions[0], "staging", reason="tests")
    return Store(settings=settings, env=env, versions=tuple(versions))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, trained: Trained) -> Store:
    """A module's own model with versions 1 (staging) and 2 (gated)."""
    root = tmp_path_factory.mktemp("deploy")
    return make_store(root, trained, server_env(root / "home"))


@pytest.fixture(scope="module")
def staging(store: Store) -> Iterator[ServerStatus]:
    """The staging server of the module's model, launched as a process."""
    backend = ProcessBackend(store.settings)
    status = backend.launch("staging")
    try:
        yield status
    finally:
        stopped = backend.stop("staging")
        assert stopped.state == "stopped"
        assert status.ident is not None
        assert not group_exists(int(status.ident))
