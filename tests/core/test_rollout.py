"""Releases for real: promote, serve, probe and smoke; and the smoke precondition."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from mlflow.exceptions import MlflowException

from core import promotion, tags
from core.deployment import ProcessBackend, ServerStatus
from core.errors import DeploymentError, PreconditionError
from core.probes import probe, smoke
from core.registry import alias_version, set_version_tags
from core.rollout import ReleaseResult, release, rollback_release
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
