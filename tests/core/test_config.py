"""Settings from the environment: defaults, overrides, refusals and redaction."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from core.config import (
    DEFAULT_POLICY_PATH,
    load_settings,
    redact_text,
    redact_uri,
    with_actor,
)
from core.errors import ConfigError


def test_defaults_give_an_embedded_store_under_studio_home(tmp_path: Path) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})

    assert settings.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert settings.artifact_root == tmp_path / "artifacts"
    assert settings.is_embedded
    assert (settings.model_name, settings.staging_port) == ("studio-classifier", 8000)


def test_a_tracking_server_is_not_embedded(tmp_path: Path) -> None:
    settings = load_settings(
        {"STUDIO_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    )

    assert not settings.is_embedded


def test_settings_are_frozen_and_hashable(tmp_path: Path) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})

    assert hash(settings) == hash(load_settings({"STUDIO_HOME": str(tmp_path)}))
    with pytest.raises(FrozenInstanceError):
        settings.actor = "mallory"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "ACCURACY_THRESHOLD",
            "high",
            "ACCURACY_THRESHOLD='high' is not a number; set it like "
            "ACCURACY_THRESHOLD=0.9.",
        ),
        (
            "ACCURACY_THRESHOLD",
            "nan",
            "ACCURACY_THRESHOLD='nan' is not a number; set it like "
            "ACCURACY_THRESHOLD=0.9.",
        ),
        (
            "GATE_F1_THRESHOLD",
            "0,8",
            "GATE_F1_THRESHOLD='0,8' is not a number; set it like "
            "GATE_F1_THRESHOLD=0.9.",
        ),
        (
            "STUDIO_STAGING_PORT",
            "0",
            "STUDIO_STAGING_PORT='0' is not a TCP port; use a number 1-65535.",
        ),
        (
            "STUDIO_PRODUCTION_PORT",
            "http",
            "STUDIO_PRODUCTION_PORT='http' is not a TCP port; use a number 1-65535.",
        ),
        (
            "STUDIO_DEPLOY_BACKEND",
            "k8s",
            "STUDIO_DEPLOY_BACKEND='k8s' is not one of auto, docker, process.",
        ),
        (
            "STUDIO_DOCKER_NETWORK",
            "Overlay",
            "STUDIO_DOCKER_NETWORK='overlay' is not one of bridge, host.",
        ),
        (
            "STUDIO_MIRROR_STAGES",
            "maybe",
            "STUDIO_MIRROR_STAGES='maybe' is not a boolean; use true or false.",
        ),
        (
            "STUDIO_PRODUCTION_PORT",
            "8000",
            "STUDIO_STAGING_PORT and STUDIO_PRODUCTION_PORT are both 8000; give "
            "the two servers different ports.",
        ),
    ],
)
def test_bad_values_are_refused_with_the_fix(
    tmp_path: Path, name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"STUDIO_HOME": str(tmp_path), name: value})

    assert str(raised.value) == message


def test_gate_threshold_variables_are_keyed_by_check_name(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "STUDIO_HOME": str(tmp_path),
            "GATE_F1_THRESHOLD": "0.8",
            "GATE_ROC_AUC_THRESHOLD": "0.75",
            "ACCURACY_THRESHOLD": "0.9",
        }
    )

    assert settings.threshold_overrides == (("f1", 0.8), ("roc_auc", 0.75))
    assert settings.accuracy_threshold == 0.9


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("YES", True), ("1", True), ("off", False), ("", False)],
)
def test_mirror_stages_reads_booleans(tmp_path: Path, raw: str, expected: bool) -> None:
    env = {"STUDIO_HOME": str(tmp_path), "STUDIO_MIRROR_STAGES": raw}

    assert load_settings(env).mirror_legacy_stages is expected


def test_actor_comes_from_env_and_an_explicit_actor_wins(tmp_path: Path) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path), "STUDIO_ACTOR": "alice"})

    assert settings.actor == "alice"
    assert with_actor(settings, "ci-bot").actor == "ci-bot"
    assert with_actor(settings, None) is settings
    assert with_actor(settings, "   ") is settings
    blank = load_settings({"STUDIO_HOME": str(tmp_path), "STUDIO_ACTOR": "  "})
    assert blank.actor.strip() != ""


def test_policy_in_force_is_explicit_then_saved_then_shipped(tmp_path: Path) -> None:
    settings = load_settings({"STUDIO_HOME": str(tmp_path)})
    assert settings.effective_policy_path == DEFAULT_POLICY_PATH

    settings.saved_policy_path.write_text("[[checks]]\n")
    assert settings.effective_policy_path == tmp_path / "gate_policy.toml"

    pinned = load_settings(
        {"STUDIO_HOME": str(tmp_path), "STUDIO_GATE_POLICY": str(tmp_path / "p.toml")}
    )
    assert pinned.effective_policy_path == tmp_path / "p.toml"


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            "https://alice:s3cret@dagshub.com/a/b.mlflow",
            "https://***@dagshub.com/a/b.mlflow",
        ),
        ("http://token@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_redact_uri_masks_credentials(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown


def test_redact_text_masks_userinfo_and_secret_variables() -> None:
    env = {"MLFLOW_TRACKING_PASSWORD": "pw-71c3", "MLFLOW_TRACKING_USERNAME": "bob"}
    text = "API request to http://bob:pw-71c3@host/api failed; password pw-71c3"

    assert (
        redact_text(text, env)
        == "API request to http://***@host/api failed; password ***"
    )
