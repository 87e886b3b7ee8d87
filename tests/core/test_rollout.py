"""Releases for real: promote, serve, probe and smoke; and the smoke precondition."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from mlflow.exceptions import MlflowException

from core import audit, promotion, tags
from core.deployment import ProcessBackend, ServerStatus
from core.errors import BackendUnavailableError, DeploymentError, PreconditionError
from core.probes import probe, smoke
from core.registry import alias_version, set_version_tags
from core.rollout import ReleaseResult, deploy, release, rollback_release
from core.rollout import stop as rollout_stop
from core.tracking import client_for
from tests.core.conftest import Store

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def released(store: Store, staging: ServerStatus) -> Iterator[ReleaseResult]:
    """Version 1 smoke-tested on staging, then released to production."""
    assert smoke(store.settings, "staging").passed
    try:
        yield release(store.settings, store.versions[0], "production", reason="tests")
    finally:
        ProcessBackend(store.settings).stop("production")


def test_release_serves_the_promoted_version(
    store: Store, released: ReleaseResult
) -> None:
    assert released.move.version == store.versions[0]
    assert released.status.state == "running"
    assert (released.probe.light, released.probe.served_version) == (
        "green",
        store.versions[0],
    )
    assert released.smoke is not None and released.smoke.passed


def test_production_health_shows_the_production_version(
    store: Store, released: ReleaseResult
) -> None:
    url = f"http://127.0.0.1:{store.settings.production_port}/health"
    health = httpx.get(url).json()
    assert (health["stage"], health["model_version"]) == (
        "production",
        store.versions[0],
    )


def test_rollback_release_serves_the_previous_version(
    store: Store, released: ReleaseResult
) -> None:
    first, second = store.versions
    forced = release(
        store.settings, second, "production", override_reason="rollback test"
    )
    assert forced.probe.served_version == second
    back = rollback_release(store.settings, reason="rollback test")
    assert (back.move.version, back.probe.served_version) == (first, first)
    assert probe(store.settings, "production").light == "green"


@pytest.fixture(scope="module")
def refused_switch(
    store: Store, released: ReleaseResult, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ServerStatus, BackendUnavailableError]:
    """Production as a process, then a switch to an engine that cannot answer."""
    before = ProcessBackend(store.settings).status("production")
    missing = tmp_path_factory.mktemp("no-docker") / "docker.sock"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", f"unix://{missing}")
        with pytest.raises(BackendUnavailableError) as refused:
            deploy(store.settings, "production", backend="docker")
    return before, refused.value


def test_switch_that_cannot_start_leaves_the_old_server_serving(
    store: Store, refused_switch: tuple[ServerStatus, BackendUnavailableError]
) -> None:
    before, _ = refused_switch
    after = ProcessBackend(store.settings).status("production")
    assert (after.state, after.ident) == ("running", before.ident)
    assert probe(store.settings, "production").light == "green"


def test_failed_deploy_is_an_audit_event_with_the_error(
    store: Store, refused_switch: tuple[ServerStatus, BackendUnavailableError]
) -> None:
    _, error = refused_switch
    [event] = audit.history(
        store.settings, kinds=("deploy",), alias="production", limit=1
    )
    assert (event.outcome, event.version) == ("failed", store.versions[0])
    assert event.evidence == {"backend": "docker", "error": str(error)}


@pytest.mark.parametrize("timeout", [0.0, 0.5, -1.0, float("nan")])
def test_deploy_refuses_a_launch_timeout_below_one_second(
    store: Store, released: ReleaseResult, timeout: float
) -> None:
    before = ProcessBackend(store.settings).status("production")
    with pytest.raises(DeploymentError, match="use at least 1 s"):
        deploy(store.settings, "production", launch_timeout=timeout)
    after = ProcessBackend(store.settings).status("production")
    assert (after.state, after.ident) == ("running", before.ident)


def test_production_refuses_a_version_without_smoke(store: Store) -> None:
    second = store.versions[1]
    promotion.promote(store.settings, second, "staging", reason="tests")
    for key in (tags.SMOKE_PASSED, tags.SMOKE_STAGE):
        with contextlib.suppress(MlflowException):  # never smoked: nothing to drop
            client_for(store.settings).delete_model_version_tag(
                store.settings.model_name, second, key
            )
    try:
        with pytest.raises(PreconditionError) as refused:
            promotion.promote(store.settings, second, "production")
    finally:
        promotion.promote(store.settings, store.versions[0], "staging")
    assert refused.value.missing == ["smoke passed"]


def test_production_refuses_a_failed_smoke(store: Store) -> None:
    second = store.versions[1]
    promotion.promote(store.settings, second, "staging", reason="tests")
    failed = {tags.SMOKE_PASSED: "false", tags.SMOKE_DETAIL: "3 mismatches"}
    set_version_tags(store.settings, second, {**failed, tags.SMOKE_STAGE: "staging"})
    try:
        with pytest.raises(PreconditionError, match="failed: 3 mismatches"):
            promotion.promote(store.settings, second, "production")
        moved = promotion.promote(
            store.settings, second, "production", skip_smoke_reason="known flake"
        )
    finally:
        promotion.promote(store.settings, store.versions[0], "staging")
    assert moved.overridden == ("smoke passed",)
    assert alias_version(store.settings, "production") == second


def test_release_that_cannot_serve_says_how_to_recover(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A separate data directory keeps the module's servers out of this test.
    settings = replace(store.settings, data_dir=store.settings.data_dir / "broken")
    monkeypatch.setenv("MAX_BATCH_SIZE", "0")  # the server refuses to start
    second = store.versions[1]
    recover = f"staging now points to version {second}"
    with pytest.raises(DeploymentError, match=recover):
        release(settings, second, "staging", reason="tests")
    promotion.promote(store.settings, store.versions[0], "staging")


def test_stopping_a_stage_is_an_audit_event_with_what_it_served(
    store: Store, released: ReleaseResult
) -> None:
    served = probe(store.settings, "production").served_version

    stopped = rollout_stop(store.settings, "production")
    rollout_stop(store.settings, "production")  # nothing runs: nothing to record

    assert stopped.state == "stopped"
    events = audit.history(store.settings, kinds=("deploy",), alias="production")
    assert (events[0].outcome, events[0].version) == ("stopped", served)
    assert events[1].outcome != "stopped"
