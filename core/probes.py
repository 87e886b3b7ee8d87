"""Ask a running stage's server what it serves, and prove it answers correctly.

`probe` reads ``/health`` and compares the served version with the registry
alias; `smoke` replays a version's golden rows over HTTP, checks the answers
match the same version's offline predictions, measures latency and records
the outcome on the version (production promotion requires a passing one);
`predict` sends one request for the app's test form.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np
import pandas as pd

from core import audit, tags
from core.artifacts import golden_xy, load_pyfunc
from core.config import Settings, Stage
from core.deployment.base import fetch_health, server_url
from core.errors import ProbeError, StudioError, VersionNotFoundError
from core.registry import alias_version, get_version, set_version_tags

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
DETAIL_LIMIT = 500


@dataclass(frozen=True)
class ProbeResult:
    """One look at a stage's server.

    `light` is "green" (healthy and serving the alias's version), "amber"
    (loading, or the registry could not be asked) or "red" (down, failing, or
    serving another version than the alias names).
    """

    stage: Stage
    url: str
    reachable: bool
    http_status: int | None
    health: dict[str, Any]
    response_ms: float | None
    served_version: str | None
    alias_version: str | None
    matches: bool | None
    light: str
    message: str
    identity_problems: tuple[str, ...] = ()

    @property
    def is_healthy(self) -> bool:
        """True when the light is green."""
        return self.light == "green"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "stage": self.stage,
            "url": self.url,
            "reachable": self.reachable,
            "http_status": self.http_status,
            "health": self.health,
            "response_ms": self.response_ms,
            "served_version": self.served_version,
            "alias_version": self.alias_version,
            "matches": self.matches,
            "light": self.light,
            "message": self.message,
            "identity_problems": list(self.identity_problems),
        }


@dataclass(frozen=True)
class SmokeResult:
    """The outcome of one smoke test of the version a stage serves."""

    stage: Stage
    version: str
    passed: bool
    rows: int
    p50_ms: float
    p95_ms: float
    mismatches: int
    detail: str
    problems: tuple[str, ...] = field(default=())
    audit_run_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "stage": self.stage,
            "version": self.version,
            "passed": self.passed,
            "rows": self.rows,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "mismatches": self.mismatches,
            "detail": self.detail,
            "problems": list(self.problems),
            "audit_run_id": self.audit_run_id,
        }


def probe(settings: Settings, stage: Stage, timeout: float = 2.0) -> ProbeResult:
    """Read the stage server's /health and compare it with the registry alias."""
    url = server_url(settings, stage)
    started = time.perf_counter()
    code, health = fetch_health(url, timeout)
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    served = health.get("model_version") if code == 200 else None
    served = None if served is None else str(served)
    try:
        expected = alias_version(settings, stage)
        # A version number alone proves nothing: another store, or another model
        # on the same port, can serve a "version 1" too. Identity is name, stage
        # and run.
        foreign = _identity_problems(settings, stage, health) if served else []
        registry_error = ""
    except StudioError as exc:
        expected, foreign, registry_error = None, [], str(exc)
    matches = (
        None if served is None or registry_error else served == expected and not foreign
    )

    light, message = _judge(stage, url, code, health, served, expected, registry_error)
    if foreign:
        light, message = "red", "MISMATCH: " + "; ".join(foreign)
    return ProbeResult(
        stage=stage,
        url=url,
        reachable=code is not None,
        http_status=code,
        health=health,
        response_ms=elapsed if code is not None else None,
        served_version=served,
        alias_version=expected,
        matches=matches,
        light=light,
        message=message,
        identity_problems=tuple(foreign),
    )


def _judge(
    stage: Stage,
    url: str,
    code: int | None,
    health: dict[str, Any],
    served: str | None,
    expected: str | None,
    registry_error: str,
) -> tuple[str, str]:
    if code is None:
        return "red", (
            f"no {stage} server answers at {url}; deploy it with python -m core "
            f"deploy --stage {stage}"
        )
    if code != 200:
        status = health.get("status", f"HTTP {code}")
        detail = health.get("detail") or "no detail given"
        light = "amber" if status == "loading" else "red"
        return light, f"{stage} server is {status}: {detail}"
    if registry_error:
        return "amber", (
            f"serving version {served}, but the registry could not be asked: "
            f"{registry_error}"
        )
    if expected is None:
        return "red", (
            f"MISMATCH: serving version {served} but {stage} is not set in the registry"
        )
    if served != expected:
        return "red", (
            f"MISMATCH: serving version {served} but {stage} is version {expected}; "
            f"redeploy with python -m core deploy --stage {stage}"
        )
    return "green", f"serving version {served}, as {stage} says"


def _identity_problems(
    settings: Settings, stage: Stage, health: dict[str, Any]
) -> list[str]:
    """What in the health body says this server is not one of this registry's."""
    problems = []
    served_name = health.get("model_name")
    if served_name is not None and served_name != settings.model_name:
        problems.append(
            f"the server serves model {served_name!r}, not {settings.model_name!r}; "
            "check STUDIO_MODEL_NAME and the port settings"
        )
    served_stage = health.get("stage")
    if served_stage is not None and served_stage != stage:
        problems.append(
            f"the server on the {stage} port says it is the {served_stage} server; "
            "check the port settings"
        )
    served_run = health.get("run_id")
    served = str(health.get("model_version"))
    if problems or not served_run:
        return problems
    ours = _run_of(settings, served)
    if ours != served_run:
        held = (
            f"this registry's version {served} comes from run {ours}"
            if ours
            else f"this registry has no version {served}"
        )
        problems.append(
            f"the server serves version {served} from run {served_run}, but {held}: "
            f"it belongs to another tracking store; stop it from there, or give "
            f"this store other ports (STUDIO_{stage.upper()}_PORT)"
        )
    return problems


def _run_of(settings: Settings, version: str) -> str | None:
    try:
        return get_version(settings, version, with_run=False).run_id
    except VersionNotFoundError:
        return None


def predict(
    settings: Settings, stage: Stage, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Send `records` to the stage's /predict and return its JSON answer.

    Raises:
        ProbeError: the server is unreachable or refused the request (the
            message carries its status and detail).
    """
    url = f"{server_url(settings, stage)}/predict"
    try:
        response = httpx.post(url, json={"inputs": records}, timeout=REQUEST_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise ProbeError(
            f"cannot reach the {stage} server at {url} ({type(exc).__name__}); "
            f"check it with python -m core probe --stage {stage}"
        ) from exc
    body = _json(response)
    if response.status_code != 200:
        detail = body.get("detail") if isinstance(body, dict) else response.text
        raise ProbeError(
            f"the {stage} server refused the request ({response.status_code}): {detail}"
        )
    if not isinstance(body, dict):
        raise ProbeError(f"the {stage} server answered {body!r}, not a JSON object")
    return body


def smoke(
    settings: Settings, stage: Stage, rows: int = 50, record: bool = True
) -> SmokeResult:
    """Replay golden rows against the stage's server and judge the answers.

    Checks that a batch request and single-row requests answer with the
    documented schema, that every prediction equals the offline prediction of
    the same version, and measures single-row latency. With `record`, the
    outcome is written as tags on the version and as a "smoke" audit event.

    Raises:
        ProbeError: the server is not healthy, or the served version has no
            golden set to replay (nothing is recorded then).
    """
    if rows < 1:
        raise ProbeError(f"rows={rows}; send at least one row.")
    checked = probe(settings, stage, timeout=5.0)
    if checked.served_version is None:
        raise ProbeError(f"cannot smoke-test {stage}: {checked.message}")
    if checked.identity_problems:
        # Another model or store answers on this port: a pass recorded now would
        # land on a version of ours that nobody serves.
        raise ProbeError(f"cannot smoke-test {stage}: {checked.message}")
    version = checked.served_version
    info = get_version(settings, version)
    golden = golden_xy(settings, info.run_id)
    if golden is None:
        raise ProbeError(
            f"version {version} has no golden set (it was not trained by Promotion "
            "Studio), so there is nothing to replay; promote it with --skip-smoke "
            "and a reason instead."
        )
    features = golden[0].head(rows).reset_index(drop=True)
    expected = _plain(load_pyfunc(settings, version).predict(features))
    records: list[dict[str, Any]] = json.loads(features.to_json(orient="records"))

    url = f"{checked.url}/predict"
    problems: list[str] = []
    mismatches = 0
    latencies: list[float] = []
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
        batch = _call(client, url, records, version, problems)
        if batch is not None:
            mismatches += _compare(batch, expected, 0, problems)
        for index, row in enumerate(records):
            started = time.perf_counter()
            single = _call(client, url, [row], version, problems)
            latencies.append((time.perf_counter() - started) * 1000)
            if single is not None:
                mismatches += _compare(single, expected[index : index + 1], index, [])

    if mismatches:
        problems.append(
            f"{mismatches} served predictions differ from version {version}'s "
            "offline predictions"
        )
    p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
    passed = not problems
    detail = (
        f"{len(records)} golden rows: predictions match offline, p50 {p50} ms, "
        f"p95 {p95} ms"
        if passed
        else "; ".join(dict.fromkeys(problems))[:DETAIL_LIMIT]
    )
    result = SmokeResult(
        stage=stage,
        version=version,
        passed=passed,
        rows=len(records),
        p50_ms=p50,
        p95_ms=p95,
        mismatches=mismatches,
        detail=detail,
        problems=tuple(dict.fromkeys(problems)),
    )
    log = logger.info if passed else logger.warning
    log(
        "Smoke test of %s version %s %s: %s",
        stage,
        version,
        "passed" if passed else "FAILED",
        detail,
    )
    return _record(settings, result, checked.url) if record else result


def _call(
    client: httpx.Client,
    url: str,
    records: list[dict[str, Any]],
    version: str,
    problems: list[str],
) -> list[Any] | None:
    """POST records; return the predictions, or None after noting the problem."""
    try:
        response = client.post(url, json={"inputs": records})
    except httpx.HTTPError as exc:
        problems.append(f"request failed: {type(exc).__name__}: {exc}")
        return None
    body = _json(response)
    if response.status_code != 200:
        detail = body.get("detail") if isinstance(body, dict) else response.text[:200]
        problems.append(f"/predict answered {response.status_code}: {detail}")
        return None
    found = _schema_problems(body, len(records), version)
    problems.extend(found)
    if found or not isinstance(body, dict):
        return None
    predictions: list[Any] = body["predictions"]
    return predictions


def _schema_problems(body: Any, rows: int, version: str) -> list[str]:
    if not isinstance(body, dict):
        return [f"/predict answered {type(body).__name__}, not a JSON object"]
    problems = []
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != rows:
        problems.append(
            f"'predictions' should be a list of {rows} values; got "
            f"{_describe(predictions)}"
        )
    probabilities = body.get("probabilities")
    if probabilities is not None and (
        not isinstance(probabilities, list)
        or len(probabilities) != rows
        or not all(isinstance(p, dict) for p in probabilities)
    ):
        problems.append(
            f"'probabilities' should be null or a list of {rows} objects; got "
            f"{_describe(probabilities)}"
        )
    if str(body.get("model_version")) != version:
        problems.append(
            f"'model_version' is {body.get('model_version')!r}, expected {version!r}"
        )
    return problems


def _compare(
    served: list[Any], expected: list[Any], offset: int, problems: list[str]
) -> int:
    differing = [
        i
        for i, (a, b) in enumerate(zip(served, expected, strict=True))
        if not _same(a, b)
    ]
    for i in differing[:3]:
        problems.append(
            f"row {offset + i}: served {served[i]!r}, offline {expected[i]!r}"
        )
    return len(differing)


def _same(served: Any, offline: Any) -> bool:
    if isinstance(served, bool) or isinstance(offline, bool):
        return bool(served == offline)
    if isinstance(served, int | float) and isinstance(offline, int | float):
        return math.isclose(served, offline, rel_tol=1e-9, abs_tol=1e-12)
    return bool(served == offline)


def _plain(predictions: Any) -> list[Any]:
    # The same conversion the server applies before answering in JSON.
    if isinstance(predictions, pd.DataFrame):
        return predictions.to_dict(orient="records")
    if hasattr(predictions, "tolist"):
        converted: list[Any] = predictions.tolist()
        return converted
    return list(predictions)


def _record(settings: Settings, result: SmokeResult, url: str) -> SmokeResult:
    at = audit.now()
    set_version_tags(
        settings,
        result.version,
        {
            tags.SMOKE_PASSED: "true" if result.passed else "false",
            tags.SMOKE_STAGE: result.stage,
            tags.SMOKE_AT: at.isoformat(),
            tags.SMOKE_P50_MS: f"{result.p50_ms:g}",
            tags.SMOKE_P95_MS: f"{result.p95_ms:g}",
            tags.SMOKE_DETAIL: result.detail,
        },
    )
    event = audit.record(
        settings,
        audit.AuditEvent(
            kind="smoke",
            model_name=settings.model_name,
            actor=settings.actor,
            at=at,
            alias=result.stage,
            version=result.version,
            outcome="passed" if result.passed else "failed",
            evidence={**result.as_dict(), "url": url},
        ),
    )
    return replace(result, audit_run_id=event.run_id)


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return type(value).__name__ if value is not None else "nothing"
