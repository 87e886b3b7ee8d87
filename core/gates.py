"""Quality gates: a policy of checks, each measured on a version and judged.

A check is measured once (the observed value depends only on the version and
the check's options) and judged against its threshold separately, so the app's
what-if page can move thresholds without measuring again. Adding a kind of
check means writing one `CheckKind` subclass and decorating it with
`@check_kind`; nothing else changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
import tomli_w
import yaml

from core import artifacts, audit, tags
from core.config import DEFAULT_POLICY_PATH, Settings
from core.errors import PolicyError, StudioError
from core.registry import VersionInfo, alias_version, get_version, set_version_tags
from core.tracking import client_for, unreachable
from core.training import METRIC_NAMES, evaluate

logger = logging.getLogger(__name__)

Op = Literal[">=", "<="]
OPS: tuple[Op, ...] = (">=", "<=")
_RESERVED_KEYS = {"name", "kind", "op", "threshold", "description"}


@dataclass(frozen=True)
class CheckSpec:
    """One check of a policy, as written in the policy file."""

    name: str
    kind: str
    threshold: float
    op: Op
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The check as a flat table, the way the policy file writes it."""
        table: dict[str, Any] = {"name": self.name, "kind": self.kind}
        table.update(self.options)
        table.update({"op": self.op, "threshold": self.threshold})
        if self.description:
            table["description"] = self.description
        return table


@dataclass(frozen=True)
class Policy:
    """An ordered set of checks; a version passes when every check passes."""

    checks: tuple[CheckSpec, ...]
    source: str = ""

    @property
    def digest(self) -> str:
        """Identifies the checks and thresholds (not comments or file location)."""
        canonical = json.dumps(
            [c.as_dict() for c in self.checks], sort_keys=True, default=str
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def check(self, name: str) -> CheckSpec:
        """The check called `name`.

        Raises:
            PolicyError: no such check.
        """
        for spec in self.checks:
            if spec.name == name:
                return spec
        raise PolicyError(
            f"the policy has no check {name!r}; its checks are: "
            f"{', '.join(c.name for c in self.checks)}."
        )

    def with_thresholds(self, thresholds: Mapping[str, float]) -> Policy:
        """A copy with some thresholds replaced (what-if, env overrides)."""
        for name in thresholds:
            self.check(name)
        checks = tuple(
            replace(c, threshold=float(thresholds[c.name]))
            if c.name in thresholds
            else c
            for c in self.checks
        )
        return replace(self, checks=checks)

    def to_toml(self, header: str = "") -> str:
        """The policy in the file format it is read from."""
        body = tomli_w.dumps({"checks": [c.as_dict() for c in self.checks]})
        return (header + "\n" if header else "") + body


@dataclass(frozen=True)
class Measurement:
    """What a check observed on a version; `observed` None means not measurable.

    `applicable` False means the check does not apply to this version (e.g. a
    comparison with production while there is none): it passes, saying why.
    """

    observed: float | None
    detail: str = ""
    applicable: bool = True


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check on one version."""

    name: str
    kind: str
    passed: bool
    observed: float | None
    threshold: float
    op: Op
    message: str
    applicable: bool = True

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "name": self.name,
            "kind": self.kind,
            "passed": self.passed,
            "observed": self.observed,
            "threshold": self.threshold,
            "op": self.op,
            "message": self.message,
            "applicable": self.applicable,
        }


@dataclass(frozen=True)
class GateResult:
    """The verdict of a whole policy on one version."""

    model_name: str
    version: str
    passed: bool
    checks: tuple[CheckResult, ...]
    policy_digest: str
    golden_digest: str | None
    evaluated_at: datetime | None = None
    actor: str = ""

    @property
    def failed_checks(self) -> list[CheckResult]:
        """The checks that did not pass, in policy order."""
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line: PASS, or FAIL naming each failed check."""
        if self.passed:
            count = len(self.checks)
            return f"PASS ({count} check{'' if count == 1 else 's'})"
        return "FAIL: " + "; ".join(c.message for c in self.failed_checks)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (CLI `--json`, the evidence artifact)."""
        return {
            "model_name": self.model_name,
            "version": self.version,
            "passed": self.passed,
            "policy_digest": self.policy_digest,
            "golden_digest": self.golden_digest,
            "evaluated_at": self.evaluated_at.isoformat()
            if self.evaluated_at
            else None,
            "actor": self.actor,
            "checks": [c.as_dict() for c in self.checks],
        }


class Subject:
    """A version under evaluation; loads its model and golden set on demand."""

    def __init__(self, settings: Settings, info: VersionInfo) -> None:
        self.settings = settings
        self.info = info

    @cached_property
    def model(self) -> Any:
        """The fitted pipeline (raises GateError when it cannot be loaded)."""
        return artifacts.load_model(self.settings, self.info.version)

    @cached_property
    def golden(self) -> tuple[pd.DataFrame, pd.Series] | None:
        """Golden features and labels, or None for versions not trained here."""
        if not self.info.run_id:
            return None
        return artifacts.golden_xy(self.settings, self.info.run_id)

    @cached_property
    def golden_metrics(self) -> dict[str, float] | None:
        """Our standard metrics recomputed on the golden set, or None."""
        if self.golden is None:
            return None
        return evaluate(self.model, *self.golden)

    @cached_property
    def champion(self) -> Subject | None:
        """The production version when it is another version, else None."""
        version = alias_version(self.settings, "production")
        if version is None or version == self.info.version:
            return None
        return Subject(self.settings, get_version(self.settings, version))


class CheckKind(ABC):
    """How to measure one kind of check. Subclass and decorate with `check_kind`."""

    kind: ClassVar[str]
    default_op: ClassVar[Op] = ">="
    required: ClassVar[tuple[str, ...]] = ()
    label: ClassVar[str] = ""

    def validate(self, spec: CheckSpec) -> None:
        """Raise PolicyError when the spec lacks an option this kind needs."""
        for option in self.required:
            if option not in spec.options:
                raise PolicyError(
                    f"check {spec.name!r} of kind {self.kind!r} needs "
                    f"option {option!r}."
                )

    @abstractmethod
    def measure(self, spec: CheckSpec, subject: Subject) -> Measurement:
        """Observe the value this check compares with its threshold."""

    def slider_range(self, spec: CheckSpec) -> tuple[float, float, float]:
        """(min, max, step) for a threshold slider on the what-if page."""
        return (0.0, 1.0, 0.005)


CHECK_KINDS: dict[str, CheckKind] = {}


def check_kind(cls: type[CheckKind]) -> type[CheckKind]:
    """Class decorator registering a check kind under its `kind` name."""
    CHECK_KINDS[cls.kind] = cls()
    return cls


@check_kind
class MetricCheck(CheckKind):
    """A metric of the version compared with a threshold.

    The standard metrics (accuracy, precision, recall, f1, roc_auc) are computed
    afresh on the golden set; any other metric is read as the run logged it,
    which is how runs logged by other code can be gated too.
    """

    kind = "metric"
    required = ("metric",)
    label = "Metric threshold"

    def measure(self, spec: CheckSpec, subject: Subject) -> Measurement:
        metric = str(spec.options["metric"])
        if metric in METRIC_NAMES and subject.golden is not None:
            computed = subject.golden_metrics or {}
            if metric in computed:
                return Measurement(computed[metric], "on the golden set")
            return Measurement(None, f"{metric} is not defined for this target")
        if metric in subject.info.metrics:
            return Measurement(
                float(subject.info.metrics[metric]), "as logged by the run"
            )
        return Measurement(
            None,
            f"version {subject.info.version} has no metric "
            f"{metric!r} and no golden set to compute it on",
        )


def load_policy(settings: Settings, path: Path | None = None) -> Policy:
    """The policy in force: the file, then `ACCURACY_THRESHOLD` and
    `GATE_<NAME>_THRESHOLD` overrides.

    Raises:
        PolicyError: the file is unreadable or malformed, or an override names
            no check.
    """
    policy = read_policy(path or settings.effective_policy_path)
    overrides = dict(settings.threshold_overrides)
    if settings.accuracy_threshold is not None:
        policy = _with_accuracy(policy, settings.accuracy_threshold)
    unknown = sorted(set(overrides) - {c.name for c in policy.checks})
    if unknown:
        raise PolicyError(
            f"GATE_{unknown[0].upper()}_THRESHOLD names no check of the policy; "
            f"checks are: {', '.join(c.name for c in policy.checks)}."
        )
    return policy.with_thresholds(overrides)


def read_policy(path: Path) -> Policy:
    """Parse a TOML or YAML policy file.

    Raises:
        PolicyError: unreadable file, bad syntax, or an invalid check.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            f"cannot read gate policy {path}: {exc.strerror}; check STUDIO_GATE_POLICY."
        ) from None
    except UnicodeDecodeError:
        raise PolicyError(
            f"gate policy {path} is not UTF-8 text; write it as TOML or YAML."
        ) from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            document = yaml.safe_load(text) or {}
        else:
            document = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(
            f"gate policy {path} is not valid "
            f"{'YAML' if path.suffix in ('.yaml', '.yml') else 'TOML'}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return parse_policy(document, source=str(path))


def parse_policy(document: Mapping[str, Any], source: str = "") -> Policy:
    """Build a policy from the parsed file: ``{"checks": [{...}, ...]}``.

    Raises:
        PolicyError: a check lacks a field, repeats a name, or is of unknown kind.
    """
    raw_checks = document.get("checks") if isinstance(document, Mapping) else None
    if not isinstance(raw_checks, list) or not raw_checks:
        raise PolicyError(
            f"gate policy {source or '(inline)'} has no [[checks]]; "
            f"see {DEFAULT_POLICY_PATH.name} for the format."
        )
    checks: list[CheckSpec] = []
    for index, raw in enumerate(raw_checks, start=1):
        checks.append(_parse_check(raw, index, source))
    names = [c.name for c in checks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PolicyError(
            f"gate policy {source or '(inline)'}: check name {repeated[0]!r} is used "
            "twice; give each check a unique name."
        )
    return Policy(checks=tuple(checks), source=source)


def _parse_check(raw: Any, index: int, source: str) -> CheckSpec:
    where = f"gate policy {source or '(inline)'}, check {index}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected a table of fields.")
    missing = [k for k in ("name", "kind", "threshold") if k not in raw]
    if missing:
        raise PolicyError(f"{where}: missing {', '.join(missing)}.")
    kind = str(raw["kind"])
    if kind not in CHECK_KINDS:
        raise PolicyError(
            f"{where}: unknown kind {kind!r}; known kinds: "
            f"{', '.join(sorted(CHECK_KINDS))}."
        )
    op = str(raw.get("op", CHECK_KINDS[kind].default_op))
    if op not in OPS:
        raise PolicyError(f"{where}: op {op!r} must be '>=' or '<='.")
    threshold = raw["threshold"]
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(float(threshold))
    ):
        raise PolicyError(f"{where}: threshold {threshold!r} must be a number.")
    spec = CheckSpec(
        name=str(raw["name"]),
        kind=kind,
        threshold=float(threshold),
        op=op,  # checked against OPS above
        options={k: v for k, v in raw.items() if k not in _RESERVED_KEYS},
        description=str(raw.get("description", "")),
    )
    CHECK_KINDS[kind].validate(spec)
    return spec


def _with_accuracy(policy: Policy, threshold: float) -> Policy:
    """Apply `ACCURACY_THRESHOLD` (the original pipeline's variable)."""
    for spec in policy.checks:
        if spec.kind == "metric" and spec.options.get("metric") == "accuracy":
            return policy.with_thresholds({spec.name: threshold})
    added = CheckSpec(
        "accuracy",
        "metric",
        threshold,
        ">=",
        {"metric": "accuracy"},
        "From ACCURACY_THRESHOLD.",
    )
    return replace(policy, checks=(*policy.checks, added))


def judge(spec: CheckSpec, measurement: Measurement) -> CheckResult:
    """Compare a measurement with the check's threshold."""
    observed = measurement.observed
    if not measurement.applicable:
        return CheckResult(
            spec.name,
            spec.kind,
            True,
            None,
            spec.threshold,
            spec.op,
            f"{spec.name}: not applicable ({measurement.detail})",
            applicable=False,
        )
    if observed is None or math.isnan(observed):
        return CheckResult(
            spec.name,
            spec.kind,
            False,
            None,
            spec.threshold,
            spec.op,
            f"{spec.name}: not measured ({measurement.detail})",
        )
    passed = (
        observed >= spec.threshold if spec.op == ">=" else observed <= spec.threshold
    )
    verdict = "passes" if passed else "fails"
    return CheckResult(
        spec.name,
        spec.kind,
        passed,
        observed,
        spec.threshold,
        spec.op,
        f"{spec.name} {observed:.4g} {verdict} {spec.op} {spec.threshold:.4g}"
        + (f" ({measurement.detail})" if measurement.detail else ""),
    )


def measure(
    settings: Settings, policy: Policy, info: VersionInfo
) -> dict[str, Measurement]:
    """Measure every check of `policy` on one version (the slow part)."""
    subject = Subject(settings, info)
    measured: dict[str, Measurement] = {}
    for spec in policy.checks:
        try:
            measured[spec.name] = CHECK_KINDS[spec.kind].measure(spec, subject)
        except StudioError as exc:
            measured[spec.name] = Measurement(None, str(exc))
        except Exception as exc:  # a broken foreign model must not stop the gate
            logger.exception(
                "Check %s failed to measure version %s", spec.name, info.version
            )
            measured[spec.name] = Measurement(None, f"{type(exc).__name__}: {exc}")
    return measured


def verdict(
    policy: Policy, info: VersionInfo, measurements: Mapping[str, Measurement]
) -> GateResult:
    """Judge measured values against the policy's thresholds (the fast part)."""
    results = tuple(
        judge(spec, measurements.get(spec.name, Measurement(None, "not run")))
        for spec in policy.checks
    )
    return GateResult(
        model_name=info.model_name,
        version=info.version,
        passed=all(r.passed for r in results),
        checks=results,
        policy_digest=policy.digest,
        golden_digest=info.golden_digest,
    )


def evaluate_gate(
    settings: Settings,
    version: str,
    policy: Policy | None = None,
    record: bool = True,
    reason: str = "",
) -> GateResult:
    """Measure and judge a version; record the result on it when `record`.

    Raises:
        VersionNotFoundError: no such version.
        PolicyError: the policy file is invalid.
    """
    policy = policy or load_policy(settings)
    info = get_version(settings, version)
    result = verdict(policy, info, measure(settings, policy, info))
    result = replace(result, evaluated_at=audit.now(), actor=settings.actor)
    logger.info(
        "Gate %s for %s version %s: %s",
        "passed" if result.passed else "failed",
        info.model_name,
        info.version,
        result.summary(),
    )
    if record:
        record_result(settings, info, result, reason)
    return result


def record_result(
    settings: Settings, info: VersionInfo, result: GateResult, reason: str = ""
) -> None:
    """Store a gate result on the version (tags + JSON artifact) and audit it."""
    stamp = (result.evaluated_at or audit.now()).strftime("%Y%m%dT%H%M%S%fZ")
    artifact = f"gate/gate-v{info.version}-{stamp}.json"
    if info.run_id:
        try:
            client_for(settings).log_dict(info.run_id, result.as_dict(), artifact)
        except Exception as exc:
            raise unreachable(settings, exc) from exc
    set_version_tags(
        settings,
        info.version,
        {
            tags.GATE_PASSED: str(result.passed).lower(),
            tags.GATE_POLICY_DIGEST: result.policy_digest,
            tags.GATE_AT: (result.evaluated_at or audit.now()).isoformat(),
            tags.GATE_BY: settings.actor,
            tags.GATE_SUMMARY: result.summary()[:1000],
            tags.GATE_ARTIFACT: artifact if info.run_id else "",
        },
    )
    audit.record(
        settings,
        audit.AuditEvent(
            kind="gate",
            model_name=info.model_name,
            actor=settings.actor,
            at=result.evaluated_at or audit.now(),
            version=info.version,
            reason=reason,
            outcome="passed" if result.passed else "failed",
            evidence=result.as_dict(),
        ),
    )


def what_if(
    settings: Settings,
    policy: Policy,
    infos: Iterable[VersionInfo],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, Measurement]]:
    """Measure many versions once, for judging under many thresholds."""
    versions = list(infos)
    measured: dict[str, dict[str, Measurement]] = {}
    for done, info in enumerate(versions, start=1):
        measured[info.version] = measure(settings, policy, info)
        if progress:
            progress(done, len(versions))
    return measured


def save_policy(settings: Settings, policy: Policy, reason: str) -> Path:
    """Write `policy` as the saved policy of this data directory and audit it.

    Raises:
        PolicyError: no reason given, or `STUDIO_GATE_POLICY` pins another file.
    """
    if not reason.strip():
        raise PolicyError(
            "saving a gate policy needs a reason; say why the thresholds change."
        )
    if settings.policy_path is not None:
        raise PolicyError(
            f"STUDIO_GATE_POLICY pins the policy to "
            f"{settings.policy_path}; edit that file or unset the "
            "variable to save from here."
        )
    previous = load_policy(settings)
    header = (
        f"# Saved by {settings.actor} at {audit.now().isoformat()}: "
        f"{reason.strip()}\n# Replaces policy {previous.digest}."
    )
    path = settings.saved_policy_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(policy.to_toml(header), encoding="utf-8")
    audit.record(
        settings,
        audit.AuditEvent(
            kind="policy",
            model_name=settings.model_name,
            actor=settings.actor,
            at=audit.now(),
            reason=reason.strip(),
            outcome="saved",
            evidence={
                "from_digest": previous.digest,
                "to_digest": policy.digest,
                "checks": [c.as_dict() for c in policy.checks],
            },
        ),
    )
    logger.info("Saved gate policy %s to %s", policy.digest, path)
    return path


# The kinds beyond metric thresholds live in core.checks, which imports this
# module; importing it last registers them wherever gates is imported.
import core.checks  # noqa: E402, F401
