"""Resolve the served alias to one model version, in the main process only.

The worker loads exactly the version resolved here (``models:/NAME/<version>``,
never the alias), so the alias cannot move between resolution and load.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from serving.settings import ServerSettings, redact_text
from serving.status import StatusBoard

logger = logging.getLogger(__name__)

RETRY_INTERVAL_S = 5.0
PROBE_TIMEOUT_S = 5.0


class ResolutionError(Exception):
    """The alias could not be resolved; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    """The model version an alias pointed to when it was resolved."""

    model_name: str
    alias: str
    version: str
    run_id: str | None
    model_uri: str
    source_uri: str
    metrics: dict[str, float | None]
    resolved_at: str


def proxied_uri(uri: str, prefix: str | None) -> str | None:
    """Rewrite a host file URI under `prefix` to the tracking server's proxy.

    A registry kept in a sqlite file on the host records artifact locations as
    host paths (``file:///abs/.studio/artifacts/1/models/m-abc/artifacts``) that
    a container cannot read. When the same folder is served by
    ``mlflow server --serve-artifacts --artifacts-destination <folder>``,
    ``mlflow-artifacts:/1/models/m-abc/artifacts`` names the same files through
    the tracking server. Returns None when `uri` is not under `prefix`.
    """
    if not prefix:
        return None
    base = prefix.rstrip("/")
    if uri != base and not uri.startswith(base + "/"):
        return None
    return "mlflow-artifacts:/" + uri[len(base) :].lstrip("/")


def resolve_target(settings: ServerSettings) -> Target:
    """Ask the registry which version the alias points to.

    Raises:
        ResolutionError: the tracking server is unreachable, or the model or
            alias does not exist.
    """
    _probe_tracking_server(settings)
    client = MlflowClient(tracking_uri=settings.tracking_uri)
    try:
        version = client.get_model_version_by_alias(settings.model_name, settings.alias)
        source = client.get_model_version_download_uri(
            settings.model_name, version.version
        )
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    except MlflowException as error:
        hint = ""
        # A missing model is RESOURCE_DOES_NOT_EXIST; a missing alias on an
        # existing model is INVALID_PARAMETER_VALUE (MLflow 3.17).
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            hint = (
                f"; promote a version of '{settings.model_name}' to "
                f"{settings.stage} (alias '{settings.alias}') and this server "
                f"loads it"
            )
        raise ResolutionError(
            f"could not resolve alias '{settings.alias}' of model "
            f"'{settings.model_name}' at {settings.redacted_tracking_uri}: "
            f"{redact_text(error.message)}{hint}"
        ) from error
    model_uri = proxied_uri(source, settings.artifact_proxy_prefix)
    return Target(
        model_name=settings.model_name,
        alias=settings.alias,
        version=str(version.version),
        run_id=version.run_id,
        model_uri=model_uri or f"models:/{settings.model_name}/{version.version}",
        source_uri=source,
        metrics={k: v if math.isfinite(v) else None for k, v in metrics.items()},
        resolved_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _probe_tracking_server(settings: ServerSettings) -> None:
    # MLflow retries a refused connection for minutes (7 retries with backoff);
    # one plain request tells "unreachable" apart at once. Any HTTP answer,
    # even 404 or 401, means the server is there.
    parts = urlsplit(settings.tracking_uri)
    if parts.scheme not in ("http", "https"):
        return
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    url = urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
    try:
        requests.head(url, timeout=PROBE_TIMEOUT_S, allow_redirects=False)
    except requests.RequestException as error:
        raise ResolutionError(
            f"tracking server at {settings.redacted_tracking_uri} is unreachable "
            f"({type(error).__name__}); start it or fix --tracking-uri/"
            f"MLFLOW_TRACKING_URI"
        ) from error


class Resolver:
    """Resolves the alias and publishes the outcome for the other processes."""

    def __init__(
        self,
        settings: ServerSettings,
        board: StatusBoard,
        retry_interval_s: float = RETRY_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.board = board
        self.retry_interval_s = retry_interval_s
        self.attempts = 0
        self._last_failure: str | None = None

    def resolve_once(self) -> Target | None:
        """Try once; publish the target or the reason it failed."""
        self.attempts += 1
        try:
            target = resolve_target(self.settings)
        except ResolutionError as error:
            self.board.publish_target(self._failure(str(error)))
            return None
        except Exception as error:  # anything MLflow or requests may raise
            detail = redact_text(f"{type(error).__name__}: {error}")
            self.board.publish_target(
                self._failure(f"could not resolve alias: {detail}")
            )
            return None
        self.board.publish_target({"state": "resolved", **asdict(target)})
        logger.info(
            "serving model '%s' stage %s version %s (run %s) from %s",
            target.model_name,
            self.settings.stage,
            target.version,
            target.run_id,
            self.settings.redacted_tracking_uri,
        )
        return target

    def retry_in_background(self) -> threading.Thread:
        """Keep trying until the alias resolves, so the server becomes ready."""
        thread = threading.Thread(
            target=self._retry_until_resolved, name="alias-resolver", daemon=True
        )
        thread.start()
        return thread

    def _retry_until_resolved(self) -> None:
        while True:
            time.sleep(self.retry_interval_s)
            if self.resolve_once() is not None:
                return

    def _failure(self, detail: str) -> dict[str, Any]:
        # Warn when the reason changes, not on every retry of the same one.
        level = logging.DEBUG if detail == self._last_failure else logging.WARNING
        self._last_failure = detail
        logger.log(
            level,
            "%s (attempt %d; retrying every %g s)",
            detail,
            self.attempts,
            self.retry_interval_s,
        )
        return {
            "state": "error",
            "detail": f"{detail} (attempt {self.attempts}; "
            f"retrying every {self.retry_interval_s:g} s)",
            "model_name": self.settings.model_name,
            "alias": self.settings.alias,
        }
