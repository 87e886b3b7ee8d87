"""Access to the MLflow tracking store named by the settings.

One `MlflowClient` per tracking URI, and experiments created with an artifact
location under the data directory when the store is embedded.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core.config import Settings, redact_text
from core.errors import RegistryError

logger = logging.getLogger(__name__)

# Against a tracking server MLflow writes "View run ... at: <tracking URI>" to
# stdout whenever a run ends; that corrupts `--json` output and would print
# credentials embedded in the URI. Setting the variable to false brings it back.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

# mlflow's fluent API keeps the tracking URI in a process global; callers that run
# in threads (the app) must not interleave two stores.
_fluent_lock = threading.RLock()
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@lru_cache(maxsize=8)
def _client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def client_for(settings: Settings) -> MlflowClient:
    """The MLflow client for the settings' store (cached, one per URI)."""
    settings.ensure_dirs()
    return _client(settings.tracking_uri)


@contextmanager
def fluent(settings: Settings) -> Iterator[None]:
    """Point mlflow's fluent API (start_run, log_model) at the settings' store."""
    with _fluent_lock:
        settings.ensure_dirs()
        # set_tracking_uri also exports MLFLOW_TRACKING_URI (and set_registry_uri
        # MLFLOW_REGISTRY_URI) into os.environ for subprocesses. Left there, the
        # next load_settings() in this process (the app reads settings from the
        # environment on every run) would follow MLflow's default store instead.
        saved = {name: os.environ.get(name) for name in _URI_VARIABLES}
        previous = mlflow.get_tracking_uri()
        previous_registry = _explicit_registry_uri()
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_registry_uri(settings.tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)
            # Left set, the registry would stay on this store while later fluent
            # calls of other code follow a new tracking URI; "" means "follow it".
            mlflow.set_registry_uri(previous_registry)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _explicit_registry_uri() -> str:
    """The registry URI set with `mlflow.set_registry_uri`, or "" when unset.

    MLflow keeps it in a module global and its public getter cannot tell "unset"
    from "same as the tracking URI".
    """
    from mlflow.tracking._model_registry import utils as registry_utils

    return getattr(registry_utils, "_registry_uri", None) or ""


def ensure_experiment(settings: Settings, name: str) -> str:
    """Return the id of experiment `name`, creating it when missing.

    On the embedded store new experiments keep their artifacts under the
    configured artifact root, not under the current directory (MLflow's default).

    Raises:
        RegistryError: the tracking store cannot be reached.
    """
    client = client_for(settings)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment.experiment_id)
                logger.warning("Restored deleted experiment %r", name)
            return str(experiment.experiment_id)
        location = None
        if settings.is_embedded:
            location = (settings.artifact_root / name).as_uri()
        try:
            experiment_id = client.create_experiment(name, artifact_location=location)
        except MlflowException as exc:
            # Another writer created it between our get and create.
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            found = client.get_experiment_by_name(name)
            assert found is not None
            experiment_id = found.experiment_id
        logger.info("Created experiment %r", name)
        return str(experiment_id)
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc


def search_literal(value: str) -> str:
    """`value` quoted for an MLflow search filter (``tags.x = <literal>``).

    MLflow's filter grammar strips the quotes but has no escapes, so a value is
    wrapped in the kind of quote it does not contain.

    Raises:
        RegistryError: the value contains both kinds of quote.
    """
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise RegistryError(
        f"{value!r} contains both ' and \"; MLflow cannot search for it. "
        "Use a name without one of them."
    )


def fail_fast_over_http() -> None:
    """Give up on an unreachable tracking server in seconds, not minutes.

    MLflow retries a failed request 7 times with backoff (about four minutes),
    built for batch jobs riding out rate limits; a page that waits that long
    looks dead. For interactive callers (the app); variables already set win.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def unreachable(settings: Settings, exc: Exception) -> RegistryError:
    """Wrap an MLflow failure in a message that names the store and the next step."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = redact_text(text)[:300].rstrip(". ")
    return RegistryError(
        f"MLflow at {settings.redacted_tracking_uri()} failed: {text}. "
        "Check MLFLOW_TRACKING_URI and that the tracking server is running."
    )


def quiet_mlflow_warnings() -> None:
    """Keep MLflow's deprecation chatter about registry stages away from users.

    MLflow 2.9 deprecated stages; 3.x still honours them with a FutureWarning on
    every call. We only use them when mirroring is switched on, deliberately.
    """
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow\..*")
