"""Settings for Promotion Studio, read from environment variables in one place.

Every other module receives a `Settings` object instead of reading `os.environ`
itself, so tests and the app can build one for a temporary store. Defaults give
an embedded MLflow store: a sqlite file and an artifact folder under `.studio/`
in the checkout, created on first use.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from core.errors import ConfigError

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY_PATH = Path(__file__).resolve().parent / "gate_policy.toml"

Stage = Literal["staging", "production"]
STAGES: tuple[Stage, ...] = ("staging", "production")
BackendName = Literal["auto", "docker", "process"]
BACKENDS: tuple[BackendName, ...] = ("auto", "docker", "process")
NetworkMode = Literal["bridge", "host"]

# Variables MLflow itself reads for HTTP basic auth (DagsHub and friends). We pass
# them on to servers we launch but never log or print their values.
SECRET_ENV_VARS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults of the embedded store.

    Build it with `load_settings()`; use `dataclasses.replace` for variants.
    """

    data_dir: Path
    tracking_uri: str
    artifact_root: Path
    model_name: str = "studio-classifier"
    experiment_name: str = "promotion-studio"
    audit_experiment_name: str = "promotion-studio-audit"
    policy_path: Path | None = None
    accuracy_threshold: float | None = None
    # (check name, threshold) pairs from GATE_<NAME>_THRESHOLD; a tuple keeps
    # Settings hashable, so it can key caches.
    threshold_overrides: tuple[tuple[str, float], ...] = ()
    deploy_backend: BackendName = "auto"
    staging_port: int = 8000
    production_port: int = 8001
    serve_host: str = "127.0.0.1"
    docker_image: str = "promotion-studio-serving:latest"
    docker_network: NetworkMode = "bridge"
    base_image: str = "python:3.11-slim"
    tracking_server_port: int = 5000
    actor: str = ""
    mirror_legacy_stages: bool = False

    @property
    def is_embedded(self) -> bool:
        """True when tracking goes straight to a local sqlite or file store."""
        return not self.tracking_uri.startswith(("http://", "https://", "databricks"))

    @property
    def saved_policy_path(self) -> Path:
        """Where the app saves a policy edited with the what-if page."""
        return self.data_dir / "gate_policy.toml"

    @property
    def effective_policy_path(self) -> Path:
        """The policy file in force: explicit setting, then saved, then shipped."""
        if self.policy_path is not None:
            return self.policy_path
        if self.saved_policy_path.exists():
            return self.saved_policy_path
        return DEFAULT_POLICY_PATH

    def port_for(self, stage: Stage) -> int:
        """The port the server for `stage` listens on."""
        return self.staging_port if stage == "staging" else self.production_port

    def redacted_tracking_uri(self) -> str:
        """The tracking URI with any user:password part masked, for logs."""
        return redact_uri(self.tracking_uri)

    def ensure_dirs(self) -> None:
        """Create the data and artifact folders of the embedded store."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.is_embedded:
            self.artifact_root.mkdir(parents=True, exist_ok=True)


def redact_uri(uri: str) -> str:
    """Mask credentials embedded in a URI (``https://user:pw@host``)."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(
        (parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment)
    )


_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact_text(text: str, env: Mapping[str, str] | None = None) -> str:
    """Mask credentials in free text such as an MLflow error message.

    MLflow quotes the full request URL (``user:password@host`` included) in its
    errors, so any ``scheme://userinfo@`` is masked, and so is every value of the
    `SECRET_ENV_VARS` found in `env` (default: the process environment).
    """
    env = os.environ if env is None else env
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    for name in SECRET_ENV_VARS:
        secret = env.get(name)
        if secret:
            text = text.replace(secret, "***")
    return text


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `env` (default: the process environment).

    Raises:
        ConfigError: a variable is set to a value of the wrong kind.
    """
    env = os.environ if env is None else env
    data_dir = Path(env.get("STUDIO_HOME") or PROJECT_ROOT / ".studio").expanduser()
    data_dir = data_dir.resolve()
    artifact_root = Path(env.get("STUDIO_ARTIFACT_ROOT") or data_dir / "artifacts")
    tracking_uri = (
        env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir / 'mlflow.db'}"
    )
    policy = env.get("STUDIO_GATE_POLICY")

    settings = Settings(
        data_dir=data_dir,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root.expanduser().resolve(),
        model_name=env.get("STUDIO_MODEL_NAME") or "studio-classifier",
        experiment_name=env.get("STUDIO_EXPERIMENT") or "promotion-studio",
        audit_experiment_name=env.get("STUDIO_AUDIT_EXPERIMENT")
        or "promotion-studio-audit",
        policy_path=Path(policy).expanduser().resolve() if policy else None,
        accuracy_threshold=_float(env, "ACCURACY_THRESHOLD"),
        threshold_overrides=_threshold_overrides(env),
        deploy_backend=_choice(
            env, "STUDIO_DEPLOY_BACKEND", ("auto", "docker", "process"), "auto"
        ),  # type: ignore[arg-type]
        staging_port=_port(env, "STUDIO_STAGING_PORT", 8000),
        production_port=_port(env, "STUDIO_PRODUCTION_PORT", 8001),
        serve_host=env.get("STUDIO_SERVE_HOST") or "127.0.0.1",
        docker_image=env.get("STUDIO_IMAGE") or "promotion-studio-serving:latest",
        docker_network=_choice(
            env, "STUDIO_DOCKER_NETWORK", ("bridge", "host"), "bridge"
        ),  # type: ignore[arg-type]
        base_image=env.get("BASE_IMAGE") or "python:3.11-slim",
        tracking_server_port=_port(env, "STUDIO_TRACKING_PORT", 5000),
        actor=(env.get("STUDIO_ACTOR") or "").strip() or _os_user(),
        mirror_legacy_stages=_bool(env, "STUDIO_MIRROR_STAGES"),
    )
    if settings.staging_port == settings.production_port:
        raise ConfigError(
            f"STUDIO_STAGING_PORT and STUDIO_PRODUCTION_PORT are both "
            f"{settings.staging_port}; give the two servers different ports."
        )
    return settings


def accuracy_threshold_from_env(env: Mapping[str, str] | None = None) -> float | None:
    """`ACCURACY_THRESHOLD` alone, for the pipeline's gate that needs nothing else.

    Raises:
        ConfigError: it is set but not a finite number.
    """
    return _float(os.environ if env is None else env, "ACCURACY_THRESHOLD")


def with_actor(settings: Settings, actor: str | None) -> Settings:
    """A copy of `settings` acting as `actor` (unchanged when `actor` is empty)."""
    actor = (actor or "").strip()
    return replace(settings, actor=actor) if actor else settings


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        return "unknown"


def _float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # "nan" and "inf" parse, but no check can use them
        raise ConfigError(f"{name}={raw!r} is not a number; set it like {name}=0.9.")
    return value


def _threshold_overrides(env: Mapping[str, str]) -> tuple[tuple[str, float], ...]:
    """Collect ``GATE_<CHECK>_THRESHOLD`` variables, keyed by lower-case check name."""
    overrides: dict[str, float] = {}
    for name in env:
        if name.startswith("GATE_") and name.endswith("_THRESHOLD"):
            check = name[len("GATE_") : -len("_THRESHOLD")].lower()
            value = _float(env, name)
            if check and value is not None:
                overrides[check] = value
    return tuple(sorted(overrides.items()))


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a TCP port; use a number 1-65535.")
    return int(raw)


def _choice(
    env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str
) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in allowed:
        raise ConfigError(f"{name}={raw!r} is not one of {', '.join(allowed)}.")
    return raw


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false.")
