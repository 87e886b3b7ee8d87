"""Gate check kinds beyond metric thresholds: champion, latency, schema,
fairness, robustness and drift.

Each kind measures one number on a version (see `core.gates`); kinds that
compare with the production version ("the champion") are not applicable, and
pass saying so, while no version holds the production alias. Importing
`core.gates` imports this module, which registers the kinds.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import mlflow
import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
)
from mlflow.exceptions import MlflowException
from mlflow.types import DataType
from mlflow.types.schema import ColSpec, Schema
from sklearn.metrics import accuracy_score
from threadpoolctl import threadpool_limits

from core import artifacts
from core.errors import GateError, PolicyError
from core.gates import CheckKind, CheckSpec, Measurement, Subject, check_kind
from core.profiles import drift
from core.tracking import fluent
from core.training import METRIC_NAMES, evaluate

logger = logging.getLogger(__name__)

PRODUCTION = "production"
FAIRNESS_MEASURES = (
    "accuracy_difference",
    "demographic_parity_difference",
    "equalized_odds_difference",
)
_BINARY_ONLY = ("demographic_parity_difference", "equalized_odds_difference")
_WARMUP_PREDICTIONS = 5
_NUMERIC_TYPES = {"double", "float", "long", "integer", "boolean"}
_SHOWN = 5


def not_applicable(detail: str) -> Measurement:
    """A measurement that does not apply to this version; the check passes."""
    return Measurement(None, detail, applicable=False)


class OptionsCheck(CheckKind):
    """A kind whose options are all known: unknown or ill-typed ones are refused.

    Subclasses list their `accepted` options and read them through the
    `_number`, `_choice` and `_text` helpers, from `validate` (when the
    policy is read) and again from `measure`.
    """

    accepted: ClassVar[tuple[str, ...]] = ()

    def validate(self, spec: CheckSpec) -> None:
        super().validate(spec)
        unknown = sorted(set(spec.options) - set(self.accepted))
        if unknown:
            known = ", ".join(self.accepted) or "none"
            raise PolicyError(
                f"check {spec.name!r} of kind {self.kind!r} has no option "
                f"{unknown[0]!r}; its options are: {known}."
            )
        self.read(spec)

    def read(self, spec: CheckSpec) -> Any:
        """Parse and check this kind's options (raise PolicyError when bad)."""
        return None


def _number(
    spec: CheckSpec,
    option: str,
    default: float,
    low: float,
    high: float,
    whole: bool = False,
) -> float:
    raw = spec.options.get(option, default)
    is_number = (
        not isinstance(raw, bool)
        and isinstance(raw, int | float)
        and math.isfinite(float(raw))
    )
    if (
        not is_number
        or not low <= float(raw) <= high
        or (whole and float(raw) != int(raw))
    ):
        what = "a whole number" if whole else "a number"
        raise PolicyError(
            f"check {spec.name!r}: {option} = {raw!r} must be {what} from "
            f"{low:g} to {high:g}, e.g. {option} = {default:g}."
        )
    return float(raw)


def _choice(spec: CheckSpec, option: str, default: str, choices: Sequence[str]) -> str:
    raw = spec.options.get(option, default)
    if raw not in choices:
        raise PolicyError(
            f"check {spec.name!r}: {option} = {raw!r} is not one of "
            f"{', '.join(choices)}."
        )
    return str(raw)


def _text(spec: CheckSpec, option: str, example: str) -> str:
    raw = spec.options.get(option)
    if not isinstance(raw, str) or not raw.strip():
        raise PolicyError(
            f"check {spec.name!r} of kind {spec.kind!r} needs option {option!r} "
            f'as a non-empty string, e.g. {option} = "{example}".'
        )
    return raw


def _span(
    spec: CheckSpec, low: float, high: float, step: float
) -> tuple[float, float, float]:
    """A slider range widened, when needed, to hold the current threshold."""
    return (min(low, spec.threshold), max(high, spec.threshold), step)


def _listed(names: Sequence[str], quote: bool = True) -> str:
    shown = ", ".join(repr(n) if quote else n for n in names[:_SHOWN])
    more = len(names) - _SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


def _no_champion(subject: Subject) -> str:
    if PRODUCTION in subject.info.aliases:
        return (
            f"version {subject.info.version} is the production version; "
            "nothing to compare it with"
        )
    return "no version holds the production alias yet, so there is no champion"


def _golden(subject: Subject) -> tuple[pd.DataFrame, pd.Series]:
    """The version's golden set (raise GateError for versions without one)."""
    if subject.golden is None:
        raise GateError(
            f"version {subject.info.version} has no golden set; it was not "
            "trained by Promotion Studio"
        )
    return subject.golden


def _signature_inputs(subject: Subject) -> Schema:
    """The column inputs of a version's signature, as MLflow recorded them.

    Raises:
        GateError: the model has no signature, a tensor one, or cannot be read.
    """
    uri = f"models:/{subject.settings.model_name}/{subject.info.version}"
    try:
        with fluent(subject.settings):
            info = mlflow.models.get_model_info(uri)
    except (MlflowException, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GateError(f"cannot read the model of {uri}: {first[:300]}") from exc
    signature = info.signature
    if signature is None or signature.inputs is None:
        raise GateError(
            f"version {subject.info.version} was logged without a signature, so "
            "its inputs are unknown; log the model with a signature"
        )
    if signature.inputs.is_tensor_spec() or not signature.inputs.has_input_names():
        raise GateError(
            f"version {subject.info.version} takes unnamed or tensor inputs; "
            "only named columns can be compared"
        )
    return signature.inputs


def _type_name(column: ColSpec) -> str:
    kind = column.type
    return kind.name if isinstance(kind, DataType) else str(kind)


def _columns(schema: Schema) -> dict[str, ColSpec]:
    return {
        str(c.name): c
        for c in schema.inputs
        if isinstance(c, ColSpec) and c.name is not None
    }


@check_kind
class ChampionCheck(OptionsCheck):
    """Challenger minus champion on one metric, on the challenger's golden set.

    A version should not reach production if it is worse than the one serving
    now, even when it clears the absolute thresholds. Both are scored on this
    version's golden set; when the champion was trained on a different split
    it is still scored there, provided it accepts the columns. Threshold is the
    allowed drop, e.g. -0.01.
    """

    kind = "champion"
    label = "Champion vs challenger"
    default_op = ">="
    accepted = ("metric",)

    def read(self, spec: CheckSpec) -> str:
        return _choice(spec, "metric", "accuracy", METRIC_NAMES)

    def measure(self, spec: CheckSpec, subject: Subject) -> Measurement:
        metric = self.read(spec)
        champion = subject.champion
        if champion is None:
            return not_applicable(_no_champion(subject))
        x, y = _golden(subject)
        ours = (subject.golden_metrics or {}).get(metric)
        if ours is None:
            return Measurement(None, f"{metric} is not defined for this target")

        columns = _columns(_signature_inputs(champion))
        problem = _incompatibility(columns, x, y, list(champion.model.classes_))
        if problem:
            return Measurement(
                None,
                f"production version {champion.info.version} cannot be scored on "
                f"this version's golden set: {problem}",
            )
        theirs = evaluate(champion.model, x[list(columns)], y).get(metric)
        if theirs is None:
            return Measurement(
                None,
                f"{metric} of production version {champion.info.version} is not "
                "defined on this golden set",
            )

        where = (
            "the same golden set"
            if champion.info.golden_digest == subject.info.golden_digest
            else "this version's golden set, which differs from production's"
        )
        return Measurement(
            ours - theirs,
            f"{metric} {ours:.4f} vs {theirs:.4f} for production version "
            f"{champion.info.version}, on {where}",
        )

    def slider_range(self, spec: CheckSpec) -> tuple[float, float, float]:
        return _span(spec, -0.2, 0.2, 0.005)


def _incompatibility(
    columns: Mapping[str, ColSpec],
    x: pd.DataFrame,
    y: pd.Series,
    classes: Sequence[Any],
) -> str:
    """Why a model with these inputs and classes cannot score (x, y); "" if it can."""
    missing = [name for name in columns if name not in x.columns]
    if missing:
        return f"it needs {len(missing)} columns the golden set lacks: " + _listed(
            missing
        )
    retyped = [
        name
        for name, column in columns.items()
        if (_type_name(column) in _NUMERIC_TYPES)
        != pd.api.types.is_numeric_dtype(x[name])
    ]
    if retyped:
        return "columns typed differently: " + _listed(retyped)
    labels = {str(v) for v in y.unique()}
    if not labels & {str(c) for c in classes}:
        return (
            f"it predicts {_listed([str(c) for c in classes])}, none of which "
            "occurs among the golden labels"
        )
    return ""


@dataclass(frozen=True)
class LatencyOptions:
    """How many single-row predictions to time, on which clock, and the percentile."""

    rows: int
    percentile: float
    clock: str


@check_kind
class LatencyCheck(OptionsCheck):
    """A percentile (p95 by default) of single-row prediction time, in ms.

    Each golden row (cycled when the set is smaller than `rows`) goes through
    the model as MLflow's pyfunc serves it, schema enforcement included, after
    a few warm-up calls, on one thread. It measures this machine, in-process
    and without HTTP: it catches a model that became much slower, not serving
    capacity. `clock = "wall"` (default) times elapsed milliseconds, which
    other work on the machine inflates; `clock = "cpu"` times the CPU the
    predicting thread used, which stays steady on a busy machine (a logistic
    regression's p95 read 49-66 ms wall and 13-14 ms CPU on a loaded 2-CPU
    host) and suits gates on shared CI runners.
    """

    kind = "latency"
    label = "Prediction latency (ms)"
    default_op = "<="
    accepted = ("rows", "percentile", "clock")

    def read(self, spec: CheckSpec) -> LatencyOptions:
        return LatencyOptions(
            rows=int(_number(spec, "rows", 50, 5, 10_000, whole=True)),
            percentile=_number(spec, "percentile", 95, 50, 100),
            clock=_choice(spec, "clock", "wall", ("wall", "cpu")),
        )

    def measure(self, spec: CheckSpec, subject: Subject) -> Measurement:
        options = self.read(spec)
        x, _ = _golden(subject)
        try:
            model = artifacts.load_pyfunc(subject.settings, subject.info.version)
        except (MlflowException, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GateError(f"cannot load the model as pyfunc: {first[:300]}") from exc

        # Sliced before timing so only the prediction is on the clock.
        frames = [x.iloc[[i % len(x)]] for i in range(options.rows)]
        clock = time.thread_time if options.clock == "cpu" else time.perf_counter
        timings = []
        # One OpenMP/BLAS thread: fanning a single row out to threads only adds
        # contention (histogram gradient boosting's wall p95 went from about
        # 45 ms to about 1 s on a busy 2-CPU machine), and the CPU clock then
        # sees all the work.
        with threadpool_limits(limits=1):
            for frame in frames[:_WARMUP_PREDICTIONS]:
                model.predict(frame)
            for frame in frames:
                started = clock()
                model.predict(frame)
                timings.append((clock() - started) * 1000)

        observed = float(np.percentile(timings, options.percentile))
        logger.debug(
            "Version %s: p%g %s latency %.2f ms over %d predictions",
            subject.info.version,
            options.percentile,
            options.clock,
            observed,
            options.rows,
        )
        return Measurement(
            observed,
            f"p{options.percentile:g} {options.clock} time of {options.rows} "
            f"single-row pyfunc predictions on this machine; median "
            f"{np.median(timings):.1f} ms",
        )

    def slider_range(self, spec: CheckSpec) -> tuple[float, float, float]:
        return _span(spec, 0.0, 500.0, 1.0)


@check_kind
class SchemaCheck(OptionsCheck):
    """Breaking differences between this version's inputs and production's.

    Clients of the production model send its signature's columns; promoting a
    version that drops one of them, changes its type, or requires a column
    they never sent breaks those clients. Optional additions do not count.
    """

    kind = "schema"
    label = "Breaking input changes"
    default_op = "<="

    def measure(self, spec: CheckSpec, subject: Subject) -> Measurement:
        champion = subject.champion
        if champion is None:
            return not_applicable(_no_champion(subject))
        ours = _columns(_signature_inputs(subject))
        theirs = _columns(_signature_inputs(champion))
        change = SchemaChange.between(theirs, ours)
        against = f"production version {champion.info.version}"
        if not change.breaks:
            extra = f"; adds optional {_listed(change.added_optional)}"
            return Measurement(
                0.0,
                f"accepts every input of {against}"
                + (extra if change.added_optional else ""),
            )
        return Measurement(float(change.breaks), f"vs {against}: {change.describe()}")

    def slider_range(self, spec: CheckSpec) -> tuple[float, float, float]:
        return _span(spec, 0.0, 10.0, 1.0)


@dataclass(frozen=True)
class SchemaChange:
    """How a model's named inputs changed from an old version to a new one."""

    removed: tuple[str, ...]
    retyped: tuple[tuple[str, str, str], ...]
    added_required: tuple[str, ...]
    added_optional: tuple[str, ...]
    now_required: tuple[str, ...]

    @classmethod
    def between(
        cls, old: Mapping[str, ColSpec], new: Mapping[str, ColSpec]
    ) -> SchemaChange:
        """Compare two signatures' columns (name -> ColSpec)."""
        added = [n for n in new if n not in old]
        return cls(
            removed=tuple(n for n in old if n not in new),
            retyped=tuple(
                (n, _type_name(old[n]), _type_name(new[n]))
                for n in old
                if n in new and _type_name(old[n]) != _type_name(new[n])
            ),
            added_required=tuple(n for n in added if new[n].required),
            added_optional=tuple(n for n in added if not new[n].required),
            now_required=tuple(
                n for n in old if n in new and new[n].required and not old[n].required
            ),
        )

    @property
    def breaks(self) -> int:
        """Changes that break clients of the old version: one per column."""
        return (
            len(self.removed)
            + len(self.retyped)
            + len(self.added_required)
            + len(self.now_required)
        )

    def describe(self) -> str:
        """The breaking changes grouped by cause, a few columns named each."""
        parts = []
        if self.removed:
            parts.append(f"removed {_listed(self.removed)}")
        if self.retyped:
            parts.append(
                "retyped "
                + _listed([f"{n} {a} -> {b}" for n, a, b in self.retyped], quote=False)
            )
        if self.added_required:
            parts.append(f"requires new {_listed(self.added_required)}")
        if self.now_required:
            parts.append(f"now requires {_listed(self.now_required)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class FairnessOptions:
    """Which column defines the groups, which gap to measure, how to bin numbers."""

    sensitive_feature: str
    measure: str
    bins: int


@check_kind
class FairnessCheck(OptionsCheck):
    """The largest gap between groups of a sensitive feature, with fairlearn.

    `accuracy_difference` is the spread of per-group accuracy (any target);
    `demographic_parity_difference` of per-group selection rates and
    `equalized_odds_difference` of true/false positive rates (binary targets;
    the second class is positive). Numeric features are cut into `bins`
    quantile groups. Measured on the golden set, so small groups are noisy.
    """

    kind = "fairness"
    label = "Fairness gap between groups"
    default_op = "<="
    required = ("sensitive_feature",)
    accepted = ("sensitive_feature", "measure", "bins")

    def read(self, spec: CheckSpec) -> FairnessOptions:
        return FairnessOptions(
            sensitive_feature=_text(spec, "sensitive_feature", "sex"),
            measure=_choice(spec, "measure", "accuracy_difference", FAIRNESS_MEASURES),
            bins=int(_number(spec, "bins", 4, 2, 20, whole=True)),
        )

    def measure(self, spec: CheckSpec, subject: Subject) -> Measurement:
        options = self.read(spec)
        x, y = _golden(subject)
        column = options.sensitive_feature
        if column not in x.columns:
            return Measurement(
                None,
                f"the golden set of version {subject.info.version} has no column "
                f"{column!r}; its columns are {_listed([str(c) for c in x.columns])}",
            )
        classes = list(subject.model.classes_)
        if options.measure in _BINARY_ONLY and len(classes) != 2:
            return Measurement(
                None,
                f"{options.measure} needs a binary target and this one has "
                f'{len(classes)} classes; use measure = "accuracy_difference"',
            )

        groups = sensitive_groups(x[column], options.bins)
        predicted = subject.model.predict(x)
        observed = fairness_gap(options.measure, y, predicted, groups, classes)
        return Measurement(
            observed,
            f"{options.measure} across {groups.nunique()} groups of {column!r}",
        )

    def slider_range(self, spec: CheckSpec) -> tuple[float, float, float]:
        return _span(spec, 0.0, 1.0, 0.01)


def sensitive_groups(column: pd.Series, bins: int) -> pd.Series:
    """Group labels: quantile bins for numbers, the values otherwise.

    Missing values form a group of their own ("missing"), so rows are never
    dropped from the comparison.
    """
    if pd.api.types.is_numeric_dtype(column):
        binned = pd.qcut(column, q=bins, duplicates="drop")
        labels = binned.astype(str).where(binned.notna(), "missing")
    else:
        labels = column.astype(str).where(column.notna(), "missing")
    return labels.rename(column.name)


def fairness_gap(
    measure: str,
    y: pd.Series,
    predicted: np.ndarray,
    groups: pd.Series,
    classes: Sequence[Any],
) -> float:
    """One of `FAIRNESS_MEASURES`, computed by fairlearn."""
    if measure == "accuracy_difference":
        frame = MetricFrame(
            metrics=accuracy_score,
            y_true=y,
            y_pred=predicted,
            sensitive_features=groups,
        )
        return float(frame.difference())
    # fairlearn's selection and error rates take 1 as the positive label.
    positive = classes[1]
    y_true = (np.asarray(y) == positive).astype(int)
    y_pred = (np.asarray(predicted) == positive).astype(int)
    compute = (
        demographic_parity_difference
        if measure == "demographic_parity_difference"
        else equalized_odds_difference
    )
    return float(compute(y_true, y_pred, sensitive_features=groups))


@dataclass(frozen=True)
class RobustnessOptions:
    """How hard to perturb the golden set, reproducibly."""

    noise: float
    missing: float
    seed: int


@check_kind
class RobustnessCheck(OptionsCheck):
    """Accuracy lost when the golden set is perturbed: clean minus perturbed.

    Numeric features get Gaussian noise of `noise` times the column's standard
    deviation, and a `missing` fraction of all values is blanked (the pipeline
    imputes them), drawn from a generator seeded with `seed`, so the same
    version always sees the same perturbation. A model that leans on one
    feature's exact value loses more than one that does not.
    """

    kind = "robustness"
    label = "Accuracy drop under noise"
    default_op = "<="
    accepted = ("noise", "missing", "seed")

    def read(self, spec: CheckSpec) -> RobustnessOptions:
        options = RobustnessOptions(
            noise=_number(spec, "noise", 0.1, 0.0, 10.0),
            missing=_number(spec, "missing", 0.0, 0.0, 0.9),
            seed=int(_number(spec, "seed", 0, 0, 2**32 - 1, whole=True)),
        )
        if options.noise == 0 and options.missing == 0:
            raise PolicyError(
                f"check {spec.name!r}: noise and missing are both 0, so nothing "
                "is perturbed; set e.g. noise = 0.1 or missing = 0.05."
            )
        return options

    def measure(self, spec: CheckSpec, subject: Subject) -> Measurement:
        options = self.read(spec)
        x, y = _golden(subject)
        noisy = perturb(x, options.noise, options.missing, options.seed)
        clean = float(accuracy_score(y, subject.model.predict(x)))
        perturbed = float(accuracy_score(y, subject.model.predict(noisy)))
        return Measurement(
            clean - perturbed,
            f"accuracy {clean:.4f} clean, {perturbed:.4f} with noise "
            f"{options.noise:g}×std and {options.missing:.0%} missing",
        )

    def slider_range(self, spec: CheckSpec) -> tuple[float, float, float]:
        return _span(spec, 0.0, 0.5, 0.005)


def perturb(x: pd.DataFrame, noise: float, missing: float, seed: int) -> pd.DataFrame:
    """A copy of `x` with seeded noise on numeric columns and values blanked."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    for name in out.columns:
        column = out[name]
        if pd.api.types.is_float_dtype(column):
            spread = float(column.std())
            scale = spread if math.isfinite(spread) else 0.0
            jitter = rng.normal(0.0, noise * scale, len(column)) if noise else 0.0
            values = column.to_numpy(dtype="float64") + jitter
            blank = rng.random(len(column)) < missing
            out[name] = np.where(blank, np.nan, values)
        else:
            blank = rng.random(len(column)) < missing
            out[name] = column.astype("object").where(~blank, None)
    return out


@check_kind
class DriftCheck(OptionsCheck):
    """The largest PSI of any feature between this version's and production's
    training data.

    A version trained on data that moved away from what production learned
    from behaves differently even with equal scores on the golden set; PSI
    above 0.25 is the usual sign of a shift worth a look. Compares the feature
    profiles training logs (`core.profiles`); features only one side has are
    left to the schema check.
    """

    kind = "drift"
    label = "Training data drift (max PSI)"
    default_op = "<="

    def measure(self, spec: CheckSpec, subject: Subject) -> Measurement:
        champion = subject.champion
        if champion is None:
            return not_applicable(_no_champion(subject))
        theirs = artifacts.load_profile(subject.settings, champion.info.run_id)
        if theirs is None:
            return not_applicable(
                f"production version {champion.info.version} has no training "
                "profile (trained before profiles were logged, or elsewhere)"
            )
        ours = artifacts.load_profile(subject.settings, subject.info.run_id)
        if ours is None:
            return Measurement(
                None, f"version {subject.info.version} has no training profile"
            )

        report = drift(theirs, ours)
        worst = report.worst
        if worst is None:
            return Measurement(
                None,
                f"no feature in common with production version "
                f"{champion.info.version}'s training data",
            )
        name, value = worst
        skipped = len(report.only_reference) + len(report.only_current)
        note = f"; {skipped} features not shared" if skipped else ""
        return Measurement(
            value,
            f"largest on {name!r} of {len(report.psi)} features vs production "
            f"version {champion.info.version}{note}",
        )

    def slider_range(self, spec: CheckSpec) -> tuple[float, float, float]:
        return _span(spec, 0.0, 1.0, 0.01)
