"""Gate check kinds beyond metric thresholds, measured on real versions.

The session store (root conftest `trained`) holds breast_cancer versions 1
(logistic regression), 2 (C=0.001, worse) and 3 (small random forest). This
module adds, under its own model name, a logistic regression with C=0.5, two
wine versions, versions trained on breast_cancer with "mean radius" shifted
and with an extra categorical "site" column, and one logged by plain MLflow
code (no signature, golden set or profile). Each test registers what it needs
under its own model and sets production itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
)
from mlflow.exceptions import MlflowException
from mlflow.types.schema import ColSpec
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

from core import artifacts, gates, registry
from core.checks import SchemaChange, not_applicable, perturb
from core.config import DEFAULT_POLICY_PATH, Settings
from core.data import load_builtin
from core.errors import PolicyError
from core.gates import CHECK_KINDS, Measurement, parse_policy
from core.profiles import drift
from core.tracking import client_for, ensure_experiment, fluent
from core.training import TrainRequest, model_requirements, train, trusted_types

SITES = ("north", "south", "east")
COMPARISONS = ("champion", "schema", "drift")


@dataclass(frozen=True)
class Extra:
    """The module's extra versions: label -> version of `settings.model_name`."""

    settings: Settings
    versions: dict[str, str]


def log_foreign(settings: Settings) -> str:
    """Register a model logged by plain MLflow code, as another team would."""
    frame = load_builtin("breast_cancer").frame
    model = LogisticRegression(max_iter=5000)
    model.fit(frame.drop(columns="target"), frame["target"])
    experiment = ensure_experiment(settings, settings.experiment_name)
    with fluent(settings), mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=settings.model_name,
            skops_trusted_types=trusted_types(model),
            pip_requirements=model_requirements(),
        )
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def extra(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Extra:
    settings = replace(trained.settings, model_name="checks-extra")
    folder = tmp_path_factory.mktemp("check-data")
    frame = load_builtin("breast_cancer").frame
    radius = frame["mean radius"]
    frame.assign(**{"mean radius": radius + 3 * radius.std()}).to_csv(
        folder / "bc_shifted.csv", index=False
    )
    frame.assign(site=[SITES[i % 3] for i in range(len(frame))]).to_csv(
        folder / "bc_sites.csv", index=False
    )
    forest = {"n_estimators": 50}
    versions = {
        "lr2": train(settings, TrainRequest("breast_cancer", params={"C": 0.5})),
        "wine": train(settings, TrainRequest("wine")),
        "wine_rf": train(settings, TrainRequest("wine", "random_forest", forest)),
        "shifted": train(
            settings, TrainRequest(str(folder / "bc_shifted.csv"), target="target")
        ),
        "sites": train(
            settings, TrainRequest(str(folder / "bc_sites.csv"), target="target")
        ),
    }
    labelled = {label: r.model_version for label, r in versions.items()}
    labelled["foreign"] = log_foreign(settings)
    return Extra(settings=settings, versions=labelled)


def copy_version(source: Settings, version: str, target: Settings) -> str:
    """Register `source`'s version `version` again under `target`'s model."""
    client = client_for(target)
    try:
        client.create_registered_model(target.model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    found = client_for(source).get_model_version(source.model_name, version)
    # MLflow resolves a "models:/m-..." source with the global tracking URI, not
    # the client's (see SqlAlchemyStore.create_model_version), hence fluent().
    with fluent(target):
        made = client.create_model_version(
            target.model_name, found.source, run_id=found.run_id, tags=found.tags
        )
    return str(made.version)


@pytest.fixture
def register(
    trained: Any, extra: Extra, model_settings: Settings
) -> Callable[[str], str]:
    """`register(label)` -> version of the test's model (lr, bad, rf or extra)."""
    sources = {"lr": "1", "bad": "2", "rf": "3"}

    def add(label: str) -> str:
        if label in sources:
            return copy_version(trained.settings, sources[label], model_settings)
        return copy_version(extra.settings, extra.versions[label], model_settings)

    return add


def to_production(settings: Settings, version: str) -> None:
    registry.move_alias(settings, "production", version)


def measured(settings: Settings, version: str, **check: Any) -> Measurement:
    """Measure one check, given as its policy table, on a version."""
    policy = parse_policy({"checks": [{"name": "check", "threshold": 0, **check}]})
    info = registry.get_version(settings, version)
    return gates.measure(settings, policy, info)["check"]


def golden_predictions(settings: Settings, version: str) -> tuple[Any, Any, Any]:
    info = registry.get_version(settings, version)
    golden = artifacts.golden_xy(settings, info.run_id)
    assert golden is not None
    model = artifacts.load_model(settings, version)
    return golden[0], golden[1], model


def test_importing_gates_registers_every_kind() -> None:
    kinds = {"champion", "latency", "schema", "fairness", "robustness", "drift"}

    assert kinds <= set(CHECK_KINDS)


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (
            {"kind": "latency", "rowz": 10},
            "check 'c' of kind 'latency' has no option 'rowz'; its options are: "
            "rows, percentile, clock.",
        ),
        (
            {"kind": "latency", "rows": 0},
            "check 'c': rows = 0 must be a whole number from 5 to 10000, "
            "e.g. rows = 50.",
        ),
        ({"kind": "latency", "rows": 7.5}, "rows = 7.5 must be a whole number"),
        ({"kind": "latency", "percentile": "p95"}, "percentile = 'p95' must be"),
        ({"kind": "latency", "clock": "gpu"}, "clock = 'gpu' is not one of wall, cpu."),
        (
            {"kind": "champion", "metric": "auc"},
            "check 'c': metric = 'auc' is not one of accuracy, precision, recall, "
            "f1, roc_auc.",
        ),
        (
            {"kind": "fairness"},
            "check 'c' of kind 'fairness' needs option 'sensitive_feature'.",
        ),
        (
            {"kind": "fairness", "sensitive_feature": ""},
            "needs option 'sensitive_feature' as a non-empty string",
        ),
        (
            {"kind": "fairness", "sensitive_feature": "sex", "measure": "parity"},
            "measure = 'parity' is not one of accuracy_difference, ",
        ),
        (
            {"kind": "fairness", "sensitive_feature": "sex", "bins": 1},
            "bins = 1 must be a whole number from 2 to 20",
        ),
        (
            {"kind": "robustness", "noise": 0, "missing": 0},
            "check 'c': noise and missing are both 0, so nothing is perturbed; "
            "set e.g. noise = 0.1 or missing = 0.05.",
        ),
        ({"kind": "robustness", "missing": 1.5}, "missing = 1.5 must be a number"),
        ({"kind": "schema", "against": "staging"}, "its options are: none."),
        ({"kind": "drift", "bins": 10}, "has no option 'bins'"),
    ],
)
def test_bad_options_are_refused_when_the_policy_is_read(
    check: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyError) as raised:
        parse_policy({"checks": [{"name": "c", "threshold": 0, **check}]})

    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("kind", "threshold", "expected"),
    [
        ("champion", -0.01, (-0.2, 0.2)),
        ("latency", 100, (0.0, 500.0)),
        ("latency", 900, (0.0, 900.0)),
        ("schema", 0, (0.0, 10.0)),
        ("drift", 0.25, (0.0, 1.0)),
    ],
)
def test_sliders_span_the_usual_range_and_the_threshold(
    kind: str, threshold: float, expected: tuple[float, float]
) -> None:
    spec = gates.CheckSpec("c", kind, threshold, CHECK_KINDS[kind].default_op)

    assert CHECK_KINDS[kind].slider_range(spec)[:2] == expected


def test_not_applicable_passes_and_says_why() -> None:
    spec = gates.CheckSpec("champion", "champion", -0.01, ">=")

    result = gates.judge(spec, not_applicable("no champion"))

    assert (result.passed, result.applicable) == (True, False)
    assert result.message == "champion: not applicable (no champion)"
    assert result.as_dict()["applicable"] is False


@pytest.mark.parametrize("kind", COMPARISONS)
def test_comparisons_do_not_apply_without_production(
    kind: str, register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("lr")

    measurement = measured(model_settings, version, kind=kind)

    assert not measurement.applicable
    assert "no version holds the production alias yet" in measurement.detail


@pytest.mark.parametrize("kind", COMPARISONS)
def test_comparisons_do_not_apply_to_production_itself(
    kind: str, register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("lr")
    to_production(model_settings, version)

    measurement = measured(model_settings, version, kind=kind)

    assert not measurement.applicable
    assert measurement.detail == (
        f"version {version} is the production version; nothing to compare it with"
    )


def test_champion_is_the_metric_difference_on_the_same_golden_set(
    trained: Any, register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("bad")
    to_production(model_settings, champion)
    ours, theirs = (trained.results[i].metrics["f1"] for i in (1, 0))

    measurement = measured(model_settings, challenger, kind="champion", metric="f1")

    assert measurement.observed == pytest.approx(ours - theirs)
    assert measurement.detail.endswith(f"version {champion}, on the same golden set")


def test_champion_is_scored_on_the_challengers_golden_set_when_sets_differ(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("shifted")
    to_production(model_settings, champion)
    x, y, model = golden_predictions(model_settings, challenger)
    champion_model = artifacts.load_model(model_settings, champion)
    expected = accuracy_score(y, model.predict(x)) - accuracy_score(
        y, champion_model.predict(x)
    )

    measurement = measured(model_settings, challenger, kind="champion")

    assert measurement.observed == pytest.approx(expected)
    assert "which differs from production's" in measurement.detail


def test_champion_is_not_measurable_on_another_dataset(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("wine")
    to_production(model_settings, champion)

    measurement = measured(model_settings, challenger, kind="champion")

    assert (measurement.observed, measurement.applicable) == (None, True)
    assert measurement.detail.startswith(
        f"production version {champion} cannot be scored on this version's golden "
        "set: it needs 30 columns the golden set lacks: 'mean radius', "
    )


@pytest.mark.parametrize("clock", ["wall", "cpu"])
def test_latency_times_single_row_predictions(
    clock: str, register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("lr")

    measurement = measured(
        model_settings, version, kind="latency", rows=10, clock=clock
    )

    assert measurement.observed is not None
    assert 0 < measurement.observed < 5000
    assert measurement.detail.startswith(
        f"p95 {clock} time of 10 single-row pyfunc predictions on this machine"
    )


def test_latency_needs_a_golden_set(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("foreign")

    measurement = measured(model_settings, version, kind="latency", rows=10)

    assert measurement.observed is None
    assert measurement.detail == (
        f"version {version} has no golden set; it was not trained by Promotion Studio"
    )


@pytest.mark.parametrize(
    ("label", "breaks", "detail"),
    [
        ("rf", 0, "accepts every input of production version {champion}"),
        ("sites", 1, "vs production version {champion}: requires new 'site'"),
        (
            "wine",
            43,
            "vs production version {champion}: removed 'mean radius', 'mean "
            "texture', 'mean perimeter', 'mean area', 'mean smoothness' and 25 "
            "more; requires new 'alcohol', ",
        ),
    ],
)
def test_schema_counts_changes_that_break_production_clients(
    label: str,
    breaks: int,
    detail: str,
    register: Callable[[str], str],
    model_settings: Settings,
) -> None:
    champion, challenger = register("lr"), register(label)
    to_production(model_settings, champion)

    measurement = measured(model_settings, challenger, kind="schema")

    assert measurement.observed == breaks
    assert measurement.detail.startswith(detail.format(champion=champion))


def test_schema_change_counts_retyped_and_newly_required_columns() -> None:
    old = {
        "a": ColSpec("double", "a"),
        "b": ColSpec("string", "b", required=False),
        "c": ColSpec("double", "c"),
    }
    new = {
        "a": ColSpec("string", "a"),
        "b": ColSpec("string", "b"),
        "d": ColSpec("double", "d", required=False),
    }

    change = SchemaChange.between(old, new)

    assert change.breaks == 3
    assert change.added_optional == ("d",)
    assert (
        change.describe() == "removed 'c'; retyped a double -> string; now requires 'b'"
    )


def test_schema_is_not_measurable_without_a_signature(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("foreign")
    to_production(model_settings, champion)

    measurement = measured(model_settings, challenger, kind="schema")

    assert measurement.observed is None
    assert "was logged without a signature, so its inputs are unknown" in (
        measurement.detail
    )


def test_fairness_accuracy_difference_matches_fairlearn_on_quantile_groups(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("lr")
    x, y, model = golden_predictions(model_settings, version)
    groups = pd.qcut(x["mean radius"], 4)
    expected = MetricFrame(
        metrics=accuracy_score,
        y_true=y,
        y_pred=model.predict(x),
        sensitive_features=groups,
    ).difference()

    measurement = measured(
        model_settings, version, kind="fairness", sensitive_feature="mean radius"
    )

    assert measurement.observed == pytest.approx(expected)
    assert measurement.detail == "accuracy_difference across 4 groups of 'mean radius'"


@pytest.mark.parametrize(
    ("measure", "fairlearn_metric"),
    [
        ("demographic_parity_difference", demographic_parity_difference),
        ("equalized_odds_difference", equalized_odds_difference),
    ],
)
def test_fairness_binary_measures_match_fairlearn_on_a_categorical_feature(
    measure: str,
    fairlearn_metric: Callable[..., float],
    register: Callable[[str], str],
    model_settings: Settings,
) -> None:
    version = register("sites")
    x, y, model = golden_predictions(model_settings, version)
    positive = model.classes_[1]
    expected = fairlearn_metric(
        (y == positive).astype(int),
        (model.predict(x) == positive).astype(int),
        sensitive_features=x["site"],
    )

    measurement = measured(
        model_settings,
        version,
        kind="fairness",
        sensitive_feature="site",
        measure=measure,
    )

    assert measurement.observed == pytest.approx(expected)
    assert measurement.observed > 0


def test_fairness_names_the_missing_column_and_the_available_ones(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("lr")

    measurement = measured(
        model_settings, version, kind="fairness", sensitive_feature="sex"
    )

    assert measurement.observed is None
    assert measurement.detail == (
        f"the golden set of version {version} has no column 'sex'; its columns are "
        "'mean radius', 'mean texture', 'mean perimeter', 'mean area', "
        "'mean smoothness' and 25 more"
    )


def test_fairness_binary_measures_refuse_multiclass_targets(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("wine")

    measurement = measured(
        model_settings,
        version,
        kind="fairness",
        sensitive_feature="alcohol",
        measure="demographic_parity_difference",
    )

    assert measurement.observed is None
    assert measurement.detail == (
        "demographic_parity_difference needs a binary target and this one has 3 "
        'classes; use measure = "accuracy_difference"'
    )


def test_robustness_is_clean_minus_perturbed_accuracy(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("lr")
    x, y, model = golden_predictions(model_settings, version)
    noisy = perturb(x, noise=1.0, missing=0.2, seed=7)
    expected = accuracy_score(y, model.predict(x)) - accuracy_score(
        y, model.predict(noisy)
    )

    measurement = measured(
        model_settings, version, kind="robustness", noise=1.0, missing=0.2, seed=7
    )

    assert measurement.observed == pytest.approx(expected)
    assert measurement.observed > 0.02


def test_more_noise_costs_more_accuracy(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    version = register("lr")

    gentle, harsh = (
        measured(model_settings, version, kind="robustness", noise=noise).observed
        for noise in (0.05, 3.0)
    )

    assert gentle is not None and harsh is not None
    assert harsh > gentle + 0.1


def test_perturbation_is_seeded_and_blanks_the_asked_share() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {"n": rng.normal(0, 2.0, 4000), "c": rng.choice(["a", "b"], 4000)}
    ).astype({"c": object})

    once, again = (perturb(x, noise=0.5, missing=0.1, seed=3) for _ in range(2))
    other = perturb(x, noise=0.5, missing=0.1, seed=4)

    pd.testing.assert_frame_equal(once, again)
    assert not once.equals(other)
    assert once.isna().mean().to_dict() == pytest.approx({"n": 0.1, "c": 0.1}, abs=0.02)
    assert (once["n"] - x["n"]).std() == pytest.approx(0.5 * x["n"].std(), rel=0.05)


def test_drift_is_zero_for_the_same_training_data(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("rf")
    to_production(model_settings, champion)

    measurement = measured(model_settings, challenger, kind="drift")

    assert measurement.observed == 0.0
    assert measurement.detail.endswith(
        f"of 30 features vs production version {champion}"
    )


def test_drift_is_large_for_shifted_training_data(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("shifted")
    to_production(model_settings, champion)
    profiles = [
        artifacts.load_profile(
            model_settings, registry.get_version(model_settings, v).run_id
        )
        for v in (champion, challenger)
    ]
    assert profiles[0] is not None and profiles[1] is not None

    measurement = measured(model_settings, challenger, kind="drift")

    assert measurement.observed == drift(profiles[0], profiles[1]).psi["mean radius"]
    assert measurement.observed > 1.0
    assert measurement.detail.startswith("largest on 'mean radius' of 30 features")


def test_drift_is_not_measurable_without_shared_features(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("wine")
    to_production(model_settings, champion)

    measurement = measured(model_settings, challenger, kind="drift")

    assert measurement.observed is None
    assert measurement.detail == (
        f"no feature in common with production version {champion}'s training data"
    )


def test_drift_does_not_apply_when_production_has_no_profile(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("foreign"), register("lr")
    to_production(model_settings, champion)

    measurement = measured(model_settings, challenger, kind="drift")

    assert not measurement.applicable
    assert measurement.detail.startswith(
        f"production version {champion} has no training profile"
    )


def default_gate(settings: Settings, version: str) -> gates.GateResult:
    policy = gates.read_policy(DEFAULT_POLICY_PATH)
    return gates.evaluate_gate(settings, version, policy, record=False)


@pytest.mark.parametrize(
    ("production", "challenger"), [("lr", "lr2"), ("wine", "wine_rf")]
)
def test_default_policy_passes_good_versions_with_and_without_production(
    production: str,
    challenger: str,
    register: Callable[[str], str],
    model_settings: Settings,
) -> None:
    first, second = register(production), register(challenger)

    alone = default_gate(model_settings, first)
    to_production(model_settings, first)
    challenged = default_gate(model_settings, second)

    assert alone.passed, alone.summary()
    assert challenged.passed, challenged.summary()
    assert [c.name for c in alone.checks if not c.applicable] == list(COMPARISONS)
    assert all(c.applicable for c in challenged.checks)


def test_default_policy_fails_a_bad_version_against_production(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("bad")
    to_production(model_settings, champion)

    result = default_gate(model_settings, challenger)

    assert [c.name for c in result.failed_checks] == ["accuracy", "f1", "champion"]


def test_default_policy_fails_a_version_of_another_dataset(
    register: Callable[[str], str], model_settings: Settings
) -> None:
    champion, challenger = register("lr"), register("wine")
    to_production(model_settings, champion)

    result = default_gate(model_settings, challenger)

    assert [c.name for c in result.failed_checks] == ["champion", "schema", "drift"]
    assert "schema 43 fails <= 0" in result.summary()


def test_default_policy_file_lists_the_metric_checks_first() -> None:
    policy = gates.read_policy(DEFAULT_POLICY_PATH)

    assert [c.name for c in policy.checks] == [
        "accuracy",
        "f1",
        "champion",
        "latency",
        "schema",
        "robustness",
        "drift",
    ]
    assert not any(math.isnan(c.threshold) for c in policy.checks)
