"""Model versions and aliases in the MLflow model registry.

Stages are aliases (`staging`, `production`); MLflow deprecated registry stages
in 2.9. `move_alias` is the one place an alias changes: a compare-and-set under
a short lock, optionally mirrored to the legacy stage field.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from core import tags
from core.config import STAGES, Settings
from core.errors import (
    AliasNotSetError,
    ConcurrentMoveError,
    VersionNotFoundError,
)
from core.tracking import client_for, search_literal, unreachable

logger = logging.getLogger(__name__)

LOCK_PREFIX = "studio-lock--"
LOCK_TTL_SECONDS = 60.0
LOCK_WAIT_SECONDS = 10.0
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


class _Current:
    """Sentinel: move the alias from whatever version holds it now."""

    def __repr__(self) -> str:
        return "CURRENT"


CURRENT: Any = _Current()


@dataclass(frozen=True)
class VersionInfo:
    """A registered model version with what Promotion Studio knows about it."""

    model_name: str
    version: str
    run_id: str
    created_at: datetime
    aliases: tuple[str, ...]
    tags: Mapping[str, str]
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    @property
    def number(self) -> int:
        """The version as an integer, for sorting."""
        return int(self.version)

    @property
    def gate_passed(self) -> bool | None:
        """Last recorded gate outcome, or None when no gate ran."""
        raw = self.tags.get(tags.GATE_PASSED)
        return None if raw is None else tags.is_true(raw)

    def gate_state(self, policy_digest: str | None) -> str:
        """The gate as "pass", "fail", "stale" or "" (never run).

        "stale": it passed another policy than `policy_digest`, the one in
        force, which promotion does not accept. Without a digest a pass stays
        a pass.
        """
        if self.gate_passed is None:
            return ""
        if not self.gate_passed:
            return "fail"
        recorded = self.tags.get(tags.GATE_POLICY_DIGEST, "")
        return "stale" if policy_digest and recorded != policy_digest else "pass"

    @property
    def smoke_passed(self) -> bool | None:
        """Last recorded smoke outcome, or None when no smoke test ran."""
        raw = self.tags.get(tags.SMOKE_PASSED)
        return None if raw is None else tags.is_true(raw)

    @property
    def golden_digest(self) -> str | None:
        """Digest of the golden set this version was evaluated on, if ours."""
        return self.tags.get(tags.GOLDEN_DIGEST)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view for the CLI."""
        return {
            "model_name": self.model_name,
            "version": self.version,
            "run_id": self.run_id,
            "created_at": self.created_at.isoformat(),
            "aliases": list(self.aliases),
            "metrics": dict(self.metrics),
            "gate_passed": self.gate_passed,
            "smoke_passed": self.smoke_passed,
            "status": self.tags.get(tags.STATUS, ""),
            "estimator": self.tags.get(tags.RUN_ESTIMATOR, ""),
            "dataset": self.tags.get(tags.RUN_DATASET, ""),
        }


def model_names(settings: Settings) -> list[str]:
    """Names of the registered models in the store (our locks excluded)."""
    client = client_for(settings)
    try:
        models = client.search_registered_models(max_results=1000)
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc
    return sorted(m.name for m in models if not m.name.startswith(LOCK_PREFIX))


def aliases(settings: Settings, model_name: str | None = None) -> dict[str, str]:
    """Alias -> version for the model (empty when the model does not exist yet).

    Read from the registered model, not from version searches: MLflow's
    `search_model_versions` can return empty aliases on SQL stores.
    """
    name = model_name or settings.model_name
    try:
        model = client_for(settings).get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND:
            return {}
        raise unreachable(settings, exc) from exc
    return {alias: str(version) for alias, version in model.aliases.items()}


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version `alias` points to, or None when unset."""
    return aliases(settings).get(alias)


def get_version(
    settings: Settings, version: str | int, with_run: bool = True
) -> VersionInfo:
    """One version of the settings' model, with metrics and params of its run.

    Raises:
        VersionNotFoundError: no such version (or no such model).
    """
    client = client_for(settings)
    try:
        mv = client.get_model_version(settings.model_name, str(version))
    except MlflowException as exc:
        if exc.error_code in _NOT_FOUND or "not found" in str(exc).lower():
            raise VersionNotFoundError(
                f"{settings.model_name} has no version {version}; list versions with "
                "`python -m core status`."
            ) from None
        raise unreachable(settings, exc) from exc
    by_alias = aliases(settings)
    runs = _runs_by_id(client, [mv.run_id]) if with_run and mv.run_id else {}
    return _version_info(mv, by_alias, runs.get(mv.run_id or ""))


def list_versions(settings: Settings, limit: int = 200) -> list[VersionInfo]:
    """Versions of the settings' model, newest first, with their runs' metrics."""
    client = client_for(settings)
    try:
        found = client.search_model_versions(
            f"name = {search_literal(settings.model_name)}",
            max_results=limit,
            order_by=["version_number DESC"],
        )
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc
    by_alias = aliases(settings)
    runs = _runs_by_id(client, [mv.run_id for mv in found if mv.run_id])
    infos = [_version_info(mv, by_alias, runs.get(mv.run_id or "")) for mv in found]
    return sorted(infos, key=lambda v: v.number, reverse=True)


def set_version_tags(
    settings: Settings, version: str, values: Mapping[str, Any]
) -> None:
    """Write tags on a model version (values are stringified)."""
    client = client_for(settings)
    try:
        for key, value in values.items():
            client.set_model_version_tag(
                settings.model_name, str(version), key, str(value)
            )
    except MlflowException as exc:
        raise unreachable(settings, exc) from exc


def move_alias(
    settings: Settings,
    alias: str,
    version: str,
    expected: str | _Current | None = CURRENT,
) -> str | None:
    """Point `alias` at `version` if it still points at `expected`.

    Args:
        alias: `staging` or `production`.
        version: the version that should hold the alias afterwards.
        expected: the version the caller saw holding the alias (None: unset);
            `CURRENT` skips the comparison but still serialises the move.

    Returns:
        The version that held the alias before (None if unset).

    Raises:
        ConcurrentMoveError: the alias holds another version than `expected`, or
            another writer holds the move lock.
        VersionNotFoundError: `version` does not exist.
    """
    get_version(settings, version, with_run=False)
    with _move_lock(settings, alias):
        before = alias_version(settings, alias)
        if not isinstance(expected, _Current) and before != expected:
            raise ConcurrentMoveError(
                f"{alias} of {settings.model_name} moved meanwhile: expected "
                f"{_show(expected)}, found {_show(before)}. Refresh and try again."
            )
        client = client_for(settings)
        try:
            client.set_registered_model_alias(settings.model_name, alias, version)
        except MlflowException as exc:
            raise unreachable(settings, exc) from exc
        if settings.mirror_legacy_stages:
            _mirror_stage(client, settings.model_name, alias, version)
    logger.info(
        "Moved %s of %s from %s to %s",
        alias,
        settings.model_name,
        _show(before),
        version,
    )
    return before


def clear_alias(settings: Settings, alias: str) -> None:
    """Remove `alias` from the model (servers on it then report 503)."""
    try:
        client_for(settings).delete_registered_model_alias(settings.model_name, alias)
    except MlflowException as exc:
        if exc.error_code not in _NOT_FOUND:
            raise unreachable(settings, exc) from exc


def require_alias(settings: Settings, alias: str) -> str:
    """The version `alias` points to.

    Raises:
        AliasNotSetError: the alias is unset.
    """
    version = alias_version(settings, alias)
    if version is None:
        raise AliasNotSetError(
            f"{settings.model_name} has no {alias!r} alias yet; promote a version "
            f"with `python -m core promote VERSION --to {alias}`."
        )
    return version


def _show(version: str | _Current | None) -> str:
    return "nothing" if version is None else f"version {version}"


def _version_info(
    mv: ModelVersion, by_alias: Mapping[str, str], run: Any
) -> VersionInfo:
    version = str(mv.version)
    held = tuple(sorted(a for a, v in by_alias.items() if v == version))
    return VersionInfo(
        model_name=mv.name,
        version=version,
        run_id=mv.run_id or "",
        created_at=datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, UTC),
        aliases=held,
        tags=dict(mv.tags or {}),
        metrics=dict(run.data.metrics) if run is not None else {},
        params=dict(run.data.params) if run is not None else {},
        description=mv.description or "",
    )


def _runs_by_id(client: MlflowClient, run_ids: list[str]) -> dict[str, Any]:
    """Fetch runs with one search per 100 ids instead of one call per run."""
    unique = sorted(set(run_ids))
    if not unique:
        return {}
    experiment_ids = [
        e.experiment_id for e in client.search_experiments(max_results=1000)
    ]
    found: dict[str, Any] = {}
    for start in range(0, len(unique), 100):
        batch = unique[start : start + 100]
        listed = ", ".join(f"'{run_id}'" for run_id in batch)
        for run in client.search_runs(
            experiment_ids, f"attributes.run_id IN ({listed})", max_results=len(batch)
        ):
            found[run.info.run_id] = run
    return found


@contextmanager
def _move_lock(settings: Settings, alias: str) -> Iterator[None]:
    """Serialise alias moves across processes and hosts through the registry.

    MLflow has no conditional update, so a short-lived registered model acts as
    the lock: creating a name that exists fails atomically in every store (sqlite,
    PostgreSQL, REST). A lock older than its TTL belonged to a crashed writer.
    """
    client = client_for(settings)
    name = f"{LOCK_PREFIX}{settings.model_name}--{alias}"
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            client.create_registered_model(
                name,
                tags={
                    "studio.lock.expires": str(time.time() + LOCK_TTL_SECONDS),
                    "studio.lock.owner": settings.actor,
                },
                description="Held while Promotion Studio moves an alias; safe to "
                "delete if older than a minute.",
            )
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise unreachable(settings, exc) from exc
        if _break_stale_lock(client, name):
            continue
        if time.monotonic() > deadline:
            raise ConcurrentMoveError(
                f"another move of {alias} on {settings.model_name} is in progress "
                f"(lock {name!r}); wait a moment and try again."
            )
        time.sleep(0.05)
    try:
        yield
    finally:
        try:
            client.delete_registered_model(name)
        except MlflowException:
            logger.warning(
                "Could not release lock %s; it expires in %d s", name, LOCK_TTL_SECONDS
            )


def _break_stale_lock(client: MlflowClient, name: str) -> bool:
    try:
        lock = client.get_registered_model(name)
    except MlflowException:
        return True  # released meanwhile: try again at once
    expires = float(lock.tags.get("studio.lock.expires", "0") or 0)
    if expires > time.time():
        return False
    logger.warning(
        "Breaking stale alias lock %s (expired %.0f s ago)", name, time.time() - expires
    )
    with suppress(MlflowException):
        client.delete_registered_model(name)
    return True


def _mirror_stage(client: MlflowClient, model: str, alias: str, version: str) -> None:
    """Copy an alias move onto the deprecated stage field, for older consumers."""
    if alias not in STAGES:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(
            model, version, stage=alias.capitalize(), archive_existing_versions=True
        )
