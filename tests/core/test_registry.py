"""Versions and aliases: listing, the compare-and-set move, its lock, mirroring."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core import registry, tags
from core.config import Settings, load_settings
from core.errors import (
    AliasNotSetError,
    ConcurrentMoveError,
    RegistryError,
    VersionNotFoundError,
)
from core.registry import VersionInfo
from core.tracking import client_for
from tests.conftest import Trained, free_port

pytestmark = pytest.mark.integration


def lock_name(settings: Settings, alias: str) -> str:
    return f"{registry.LOCK_PREFIX}{settings.model_name}--{alias}"


def test_versions_are_listed_newest_first_with_run_metrics(
    model_settings: Settings, registered_versions: list[str], trained: Trained
) -> None:
    listed = registry.list_versions(model_settings)

    assert [v.version for v in listed] == ["3", "2", "1"]
    assert listed[2].metrics == pytest.approx(trained.results[0].metrics)
    assert listed[2].params["estimator"] == "logistic_regression"
    assert listed[2].golden_digest == trained.results[0].golden_digest
    assert listed[2].gate_passed is None and listed[2].smoke_passed is None


def test_an_unknown_version_names_the_next_step(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    with pytest.raises(VersionNotFoundError) as raised:
        registry.get_version(model_settings, "9")

    assert str(raised.value) == (
        f"{model_settings.model_name} has no version 9; list versions with "
        "`python -m core status`."
    )


def test_an_empty_store_has_no_versions_or_aliases(settings: Settings) -> None:
    assert registry.list_versions(settings) == []
    assert registry.aliases(settings) == {}
    assert registry.alias_version(settings, "staging") is None


def test_move_alias_returns_the_previous_holder(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    assert registry.move_alias(model_settings, "staging", "1") is None
    assert registry.move_alias(model_settings, "staging", "2") == "1"

    assert registry.aliases(model_settings) == {"staging": "2"}
    assert registry.get_version(model_settings, "2").aliases == ("staging",)


def test_a_stale_expectation_is_a_conflict_and_leaves_the_alias(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    registry.move_alias(model_settings, "production", "1")
    seen_by_other_writer = "1"
    registry.move_alias(model_settings, "production", "2", expected="1")

    with pytest.raises(ConcurrentMoveError) as raised:
        registry.move_alias(
            model_settings, "production", "3", expected=seen_by_other_writer
        )

    assert str(raised.value) == (
        f"production of {model_settings.model_name} moved meanwhile: expected "
        "version 1, found version 2. Refresh and try again."
    )
    assert registry.alias_version(model_settings, "production") == "2"


def test_expecting_unset_fails_once_the_alias_is_set(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    registry.move_alias(model_settings, "staging", "1", expected=None)

    with pytest.raises(ConcurrentMoveError, match="expected nothing, found version 1"):
        registry.move_alias(model_settings, "staging", "2", expected=None)


def test_two_writers_racing_the_same_move_one_wins(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    registry.move_alias(model_settings, "staging", "1")
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def move(target: str) -> None:
        start.wait()
        try:
            outcomes[target] = registry.move_alias(
                model_settings, "staging", target, expected="1"
            )
        except ConcurrentMoveError as exc:
            outcomes[target] = exc

    writers = [threading.Thread(target=move, args=(v,)) for v in ("2", "3")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=30)

    winners = [v for v, result in outcomes.items() if result == "1"]
    losers = [r for r in outcomes.values() if isinstance(r, ConcurrentMoveError)]
    assert len(winners) == 1 and len(losers) == 1
    assert registry.alias_version(model_settings, "staging") == winners[0]


def test_a_held_lock_makes_the_move_wait_then_give_up(
    model_settings: Settings,
    registered_versions: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = client_for(model_settings)
    name = lock_name(model_settings, "staging")
    client.create_registered_model(
        name, tags={"studio.lock.expires": str(time.time() + 60)}
    )
    monkeypatch.setattr(registry, "LOCK_WAIT_SECONDS", 0.5)

    with pytest.raises(ConcurrentMoveError) as raised:
        registry.move_alias(model_settings, "staging", "1")

    assert str(raised.value) == (
        f"another move of staging on {model_settings.model_name} is in progress "
        f"(lock {name!r}); wait a moment and try again."
    )
    assert registry.alias_version(model_settings, "staging") is None


def test_a_stale_lock_of_a_crashed_writer_is_broken(
    model_settings: Settings,
    registered_versions: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = lock_name(model_settings, "staging")
    client_for(model_settings).create_registered_model(
        name, tags={"studio.lock.expires": str(time.time() - 5)}
    )

    with caplog.at_level(logging.WARNING, logger="core.registry"):
        registry.move_alias(model_settings, "staging", "1")

    assert registry.alias_version(model_settings, "staging") == "1"
    assert f"Breaking stale alias lock {name}" in caplog.text
    assert name not in registry.model_names(model_settings)


def test_locks_are_not_listed_as_models(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    registry.move_alias(model_settings, "staging", "1")

    names = registry.model_names(model_settings)
    assert model_settings.model_name in names
    assert not [n for n in names if n.startswith(registry.LOCK_PREFIX)]


def test_moving_to_a_missing_version_is_refused(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    with pytest.raises(VersionNotFoundError):
        registry.move_alias(model_settings, "staging", "9")

    assert registry.alias_version(model_settings, "staging") is None


def test_require_alias_says_how_to_set_it(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    with pytest.raises(AliasNotSetError) as raised:
        registry.require_alias(model_settings, "production")

    assert str(raised.value) == (
        f"{model_settings.model_name} has no 'production' alias yet; promote a "
        "version with `python -m core promote VERSION --to production`."
    )


def test_clear_alias_unsets_it_and_tolerates_repeats(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    registry.move_alias(model_settings, "staging", "1")

    registry.clear_alias(model_settings, "staging")
    registry.clear_alias(model_settings, "staging")

    assert registry.aliases(model_settings) == {}


def test_version_tags_are_written_as_text(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    registry.set_version_tags(model_settings, "1", {"studio.note": 3, "x": True})

    assert registry.get_version(model_settings, "1").tags["studio.note"] == "3"
    assert registry.get_version(model_settings, "1").tags["x"] == "True"


def test_mirroring_sets_the_legacy_stage_without_future_warnings(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    mirrored = replace(model_settings, mirror_legacy_stages=True)
    client = client_for(mirrored)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry.move_alias(mirrored, "staging", "1")
        registry.move_alias(mirrored, "production", "1")
        registry.move_alias(mirrored, "staging", "2")

    assert not [w for w in caught if issubclass(w.category, FutureWarning)]
    stages = {
        v: client.get_model_version(mirrored.model_name, v).current_stage
        for v in ("1", "2")
    }
    assert stages == {"1": "Production", "2": "Staging"}


def test_mirroring_is_off_by_default(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    registry.move_alias(model_settings, "staging", "1")

    version = client_for(model_settings).get_model_version(
        model_settings.model_name, "1"
    )
    assert version.current_stage == "None"


def test_an_unreachable_server_is_named_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = free_port()  # nothing listens there
    settings = load_settings(
        {
            "STUDIO_HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": f"http://ann:pw-0b7e@127.0.0.1:{port}",
        }
    )

    with pytest.raises(RegistryError) as raised:
        registry.list_versions(settings)

    assert str(raised.value).startswith(f"MLflow at http://***@127.0.0.1:{port} failed")
    assert "pw-0b7e" not in str(raised.value)


@pytest.mark.parametrize(
    ("recorded", "digest", "state"),
    [
        ({}, "abc", ""),
        ({tags.GATE_PASSED: "false", tags.GATE_POLICY_DIGEST: "abc"}, "abc", "fail"),
        ({tags.GATE_PASSED: "true", tags.GATE_POLICY_DIGEST: "abc"}, "abc", "pass"),
        ({tags.GATE_PASSED: "true", tags.GATE_POLICY_DIGEST: "old"}, "abc", "stale"),
        ({tags.GATE_PASSED: "true", tags.GATE_POLICY_DIGEST: "old"}, None, "pass"),
    ],
)
def test_gate_state_tells_a_pass_under_another_policy_as_stale(
    recorded: dict[str, str], digest: str | None, state: str
) -> None:
    info = VersionInfo(
        model_name="m",
        version="1",
        run_id="r",
        created_at=datetime.now(UTC),
        aliases=(),
        tags=recorded,
    )
    assert info.gate_state(digest) == state
