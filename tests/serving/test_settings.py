"""Settings from flags and environment variables."""

from __future__ import annotations

import pytest

from serving.settings import parse_settings, redact_text, redact_uri

REQUIRED = {
    "MODEL_NAME": "churn",
    "MODEL_ALIAS": "staging",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
}


def test_environment_gives_settings_and_defaults() -> None:
    settings = parse_settings([], REQUIRED)

    assert (settings.model_name, settings.stage) == ("churn", "staging")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.max_batch_size, settings.batch_timeout) == (16, 0.01)
    assert settings.max_payload_bytes == 1024 * 1024
    assert settings.artifact_proxy_prefix is None


def test_flags_win_over_environment() -> None:
    env = REQUIRED | {"PORT": "9000", "MODEL_ALIAS": "staging"}

    settings = parse_settings(["--port", "9100", "--alias", "production"], env)

    assert (settings.port, settings.alias) == (9100, "production")


def test_optional_variables_are_read() -> None:
    env = REQUIRED | {
        "HOST": "0.0.0.0",
        "MAX_BATCH_SIZE": "4",
        "BATCH_TIMEOUT": "0.2",
        "MAX_PAYLOAD_BYTES": "2048",
        "STUDIO_ARTIFACT_PROXY_PREFIX": "file:///abs/artifacts",
    }

    settings = parse_settings([], env)

    assert (settings.host, settings.max_batch_size) == ("0.0.0.0", 4)
    assert (settings.batch_timeout, settings.max_payload_bytes) == (0.2, 2048)
    assert settings.artifact_proxy_prefix == "file:///abs/artifacts"


def test_batch_timeout_must_stay_below_the_request_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(["--batch-timeout", "30"], REQUIRED)

    assert exited.value.code == 2
    assert "must be below the request timeout of 30 s" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("uri", "redacted"),
    [
        (
            "https://user:pw@dagshub.com/u/r.mlflow",
            "https://***@dagshub.com/u/r.mlflow",
        ),
        ("http://token@127.0.0.1:5000", "http://***@127.0.0.1:5000"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_redact_uri_masks_credentials(uri: str, redacted: str) -> None:
    assert redact_uri(uri) == redacted


def test_redact_text_masks_credentials_inside_messages() -> None:
    text = "GET https://user:pw@host/api failed; retry http://a:b@c:1/x"

    assert (
        redact_text(text) == "GET https://***@host/api failed; retry http://***@c:1/x"
    )
