"""Gate policies, judging checks, the stdin contract, and gates on real versions."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core import audit, gates, registry, tags
from core.config import Settings, load_settings
from core.errors import PolicyError
from core.gates import CheckSpec, Measurement, Policy
from core.registry import VersionInfo
from core.tracking import client_for
from core.training import TrainRequest, train
from tests.conftest import PolicyWriter, Trained

ACCURACY = {
    "name": "accuracy",
    "kind": "metric",
    "metric": "accuracy",
    "threshold": 0.9,
}
F1 = {"name": "f1", "kind": "metric", "metric": "f1", "threshold": 0.85}


def info(version: str = "1", **metrics: float) -> VersionInfo:
    """A version as the registry describes it, without a store behind it."""
    return VersionInfo(
        model_name="m",
        version=version,
        run_id="",
        created_at=datetime.now(UTC),
        aliases=(),
        tags={tags.GOLDEN_DIGEST: "abc"},
        metrics=metrics,
    )


class ConstantCheck(gates.CheckKind):
    """A test kind: observes the `value` option; proves kinds plug in."""

    kind = "constant"
    required = ("value",)

    def measure(self, spec: CheckSpec, subject: gates.Subject) -> Measurement:
        return Measurement(float(spec.options["value"]), "constant")


class BrokenCheck(gates.CheckKind):
    """A test kind whose measurement crashes."""

    kind = "broken"

    def measure(self, spec: CheckSpec, subject: gates.Subject) -> Measurement:
        raise RuntimeError("boom")


@pytest.fixture
def extra_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gates.CHECK_KINDS, "constant", ConstantCheck())
    monkeypatch.setitem(gates.CHECK_KINDS, "broken", BrokenCheck())


# Policies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {},
            "gate policy (inline) has no [[checks]]; see gate_policy.toml for the "
            "format.",
        ),
        (
            {"checks": []},
            "gate policy (inline) has no [[checks]]; see gate_policy.toml for the "
            "format.",
        ),
        (
            {"checks": ["accuracy"]},
            "gate policy (inline), check 1: expected a table of fields.",
        ),
        (
            {"checks": [{"name": "a"}]},
            "gate policy (inline), check 1: missing kind, threshold.",
        ),
        (
            {"checks": [{**ACCURACY, "op": "=="}]},
            "gate policy (inline), check 1: op '==' must be '>=' or '<='.",
        ),
        (
            {"checks": [{**ACCURACY, "threshold": "0.9"}]},
            "gate policy (inline), check 1: threshold '0.9' must be a number.",
        ),
        (
            {"checks": [{**ACCURACY, "threshold": True}]},
            "gate policy (inline), check 1: threshold True must be a number.",
        ),
        (
            {"checks": [{**ACCURACY, "threshold": math.inf}]},
            "gate policy (inline), check 1: threshold inf must be a number.",
        ),
        (
            {"checks": [ACCURACY, F1, {**F1, "threshold": 0.5}]},
            "gate policy (inline): check name 'f1' is used twice; give each check a "
            "unique name.",
        ),
        (
            {"checks": [{"name": "acc", "kind": "metric", "threshold": 0.9}]},
            "check 'acc' of kind 'metric' needs option 'metric'.",
        ),
    ],
)
def test_malformed_policies_are_refused_with_the_fix(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(PolicyError) as raised:
        gates.parse_policy(document)

    assert str(raised.value) == message


def test_an_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(PolicyError) as raised:
        gates.parse_policy({"checks": [{**ACCURACY, "kind": "vibes"}]})

    message = str(raised.value)
    assert message.startswith(
        "gate policy (inline), check 1: unknown kind 'vibes'; known kinds: "
    )
    assert "metric" in message


def test_toml_and_yaml_policies_read_the_same(write_policy: PolicyWriter) -> None:
    toml_path = write_policy([ACCURACY, F1])
    yaml_path = write_policy(
        "checks:\n"
        "  - {name: accuracy, kind: metric, metric: accuracy, threshold: 0.9}\n"
        "  - {name: f1, kind: metric, metric: f1, threshold: 0.85}\n",
        name="policy.yaml",
    )

    from_toml, from_yaml = gates.read_policy(toml_path), gates.read_policy(yaml_path)

    assert from_toml.digest == from_yaml.digest
    assert [c.name for c in from_yaml.checks] == ["accuracy", "f1"]
    assert from_toml.check("f1").op == ">="  # the kind's default


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.toml",
            "[[checks]\nname = 1",
            "gate policy {path} is not valid TOML: ",
        ),
        (
            "bad.yaml",
            "checks: [unclosed",
            "gate policy {path} is not valid YAML: ",
        ),
        (
            "latin1.toml",
            b"# caf\xe9\n",
            "gate policy {path} is not UTF-8 text; write it as TOML or YAML.",
        ),
        (
            "empty.yaml",
            "",
            "gate policy {path} has no [[checks]]; see gate_policy.toml for the "
            "format.",
        ),
    ],
)
def test_unreadable_policy_files_are_refused(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)

    with pytest.raises(PolicyError) as raised:
        gates.read_policy(path)

    assert str(raised.value).startswith(message.format(path=path))


def test_a_missing_policy_file_points_at_the_variable(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as raised:
        gates.read_policy(tmp_path / "nope.toml")

    assert str(raised.value) == (
        f"cannot read gate policy {tmp_path / 'nope.toml'}: No such file or "
        "directory; check STUDIO_GATE_POLICY."
    )


def test_the_digest_names_checks_and_thresholds_only(
    write_policy: PolicyWriter,
) -> None:
    plain = gates.read_policy(write_policy([ACCURACY]))
    commented = gates.read_policy(
        write_policy("# why\n" + Policy(plain.checks).to_toml(), name="other.toml")
    )

    assert plain.digest == commented.digest
    assert plain.with_thresholds({"accuracy": 0.95}).digest != plain.digest


def test_policy_survives_a_toml_round_trip() -> None:
    policy = gates.parse_policy({"checks": [ACCURACY, {**F1, "op": "<="}]})

    again = gates.parse_policy(tomllib.loads(policy.to_toml("# h")))

    assert again.digest == policy.digest


def test_an_unknown_check_cannot_get_a_threshold() -> None:
    policy = gates.parse_policy({"checks": [ACCURACY]})

    with pytest.raises(PolicyError) as raised:
        policy.with_thresholds({"recall": 0.8})

    assert str(raised.value) == (
        "the policy has no check 'recall'; its checks are: accuracy."
    )


def settings_for(tmp_path: Path, policy: Path, **env: str) -> Settings:
    return load_settings(
        {"STUDIO_HOME": str(tmp_path), "STUDIO_GATE_POLICY": str(policy), **env}
    )


def test_accuracy_threshold_replaces_the_accuracy_check(
    tmp_path: Path, write_policy: PolicyWriter
) -> None:
    settings = settings_for(
        tmp_path, write_policy([ACCURACY, F1]), ACCURACY_THRESHOLD="0.8"
    )

    policy = gates.load_policy(settings)

    assert [(c.name, c.threshold) for c in policy.checks] == [
        ("accuracy", 0.8),
        ("f1", 0.85),
    ]


def test_accuracy_threshold_adds_a_check_when_there_is_none(
    tmp_path: Path, write_policy: PolicyWriter
) -> None:
    settings = settings_for(tmp_path, write_policy([F1]), ACCURACY_THRESHOLD="0.8")

    policy = gates.load_policy(settings)

    assert policy.check("accuracy").options == {"metric": "accuracy"}
    assert policy.check("accuracy").threshold == 0.8


def test_gate_threshold_variables_override_named_checks(
    tmp_path: Path, write_policy: PolicyWriter
) -> None:
    settings = settings_for(
        tmp_path, write_policy([ACCURACY, F1]), GATE_F1_THRESHOLD="0.7"
    )

    assert gates.load_policy(settings).check("f1").threshold == 0.7


def test_a_threshold_variable_for_no_check_is_refused(
    tmp_path: Path, write_policy: PolicyWriter
) -> None:
    settings = settings_for(
        tmp_path, write_policy([ACCURACY]), GATE_RECALL_THRESHOLD="0.7"
    )

    with pytest.raises(PolicyError) as raised:
        gates.load_policy(settings)

    assert str(raised.value) == (
        "GATE_RECALL_THRESHOLD names no check of the policy; checks are: accuracy."
    )


# Judging ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "threshold", "observed", "passed"),
    [
        (">=", 0.9, 0.9, True),
        (">=", 0.9, 0.8999, False),
        ("<=", 50.0, 50.0, True),
        ("<=", 50.0, 50.1, False),
    ],
)
def test_judge_compares_with_the_threshold(
    op: gates.Op, threshold: float, observed: float, passed: bool
) -> None:
    spec = CheckSpec("c", "metric", threshold, op, {"metric": "x"})

    assert gates.judge(spec, Measurement(observed)).passed is passed


@pytest.mark.parametrize("observed", [None, math.nan])
def test_an_unmeasured_check_fails_and_says_why(observed: float | None) -> None:
    spec = CheckSpec("f1", "metric", 0.8, ">=", {"metric": "f1"})

    result = gates.judge(spec, Measurement(observed, "no golden set"))

    assert not result.passed
    assert result.message == "f1: not measured (no golden set)"


def test_verdict_rejudges_measurements_under_new_thresholds() -> None:
    policy = gates.parse_policy({"checks": [ACCURACY, F1]})
    measured = {"accuracy": Measurement(0.92), "f1": Measurement(0.8, "golden")}

    strict = gates.verdict(policy, info(), measured)
    lenient = gates.verdict(policy.with_thresholds({"f1": 0.75}), info(), measured)

    assert strict.summary() == "FAIL: f1 0.8 fails >= 0.85 (golden)"
    assert lenient.passed and lenient.summary() == "PASS (2 checks)"
    assert strict.golden_digest == "abc"


def test_a_new_check_kind_plugs_in(extra_kinds: None) -> None:
    policy = gates.parse_policy(
        {
            "checks": [
                {
                    "name": "latency",
                    "kind": "constant",
                    "value": 40,
                    "op": "<=",
                    "threshold": 50,
                }
            ]
        }
    )

    measured = gates.measure(
        load_settings({"STUDIO_HOME": "/nonexistent"}), policy, info()
    )

    assert measured == {"latency": Measurement(40.0, "constant")}
    assert gates.verdict(policy, info(), measured).passed


def test_a_crashing_check_fails_the_gate_instead_of_stopping_it(
    extra_kinds: None,
) -> None:
    policy = gates.parse_policy(
        {
            "checks": [
                {"name": "b", "kind": "broken", "threshold": 1},
                {"name": "c", "kind": "constant", "value": 2, "threshold": 1},
            ]
        }
    )

    measured = gates.measure(
        load_settings({"STUDIO_HOME": "/nonexistent"}), policy, info()
    )
    result = gates.verdict(policy, info(), measured)

    assert measured["b"] == Measurement(None, "RuntimeError: boom")
    assert [c.passed for c in result.checks] == [False, True]


# Gates on real versions ------------------------------------------------------


@pytest.mark.integration
def test_a_gate_result_is_stored_on_the_version(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    policy = gates.load_policy(model_settings)

    result = gates.evaluate_gate(model_settings, "1", reason="nightly")

    version = registry.get_version(model_settings, "1")
    assert result.passed and version.gate_passed is True
    assert version.tags[tags.GATE_POLICY_DIGEST] == policy.digest
    assert version.tags[tags.GATE_BY] == "tester"
    assert version.tags[tags.GATE_SUMMARY] == "PASS (1 check)"
    stored = client_for(model_settings).download_artifacts(
        version.run_id, version.tags[tags.GATE_ARTIFACT]
    )
    assert json.loads(Path(stored).read_text()) == result.as_dict()
    assert result.as_dict()["policy_digest"] == policy.digest


@pytest.mark.integration
def test_a_gate_decision_is_audited_with_its_evidence(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    result = gates.evaluate_gate(model_settings, "2", reason="nightly")

    (event,) = audit.history(model_settings, kinds=("gate",))
    assert (event.version, event.outcome, event.reason) == ("2", "failed", "nightly")
    assert event.actor == "tester"
    assert audit.load_evidence(model_settings, event.run_id) == result.as_dict()


@pytest.mark.integration
def test_a_weak_version_fails_and_the_summary_says_why(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    result = gates.evaluate_gate(model_settings, "2")

    assert not result.passed
    assert result.summary().startswith("FAIL: accuracy 0.88")
    assert result.summary().endswith("fails >= 0.9 (on the golden set)")
    assert registry.get_version(model_settings, "2").gate_passed is False


@pytest.mark.integration
def test_no_record_leaves_the_version_untouched(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    gates.evaluate_gate(model_settings, "1", record=False)

    assert registry.get_version(model_settings, "1").gate_passed is None
    assert audit.history(model_settings) == []


@pytest.mark.integration
def test_gates_judge_each_version_on_the_golden_set_of_its_seed(
    model_settings: Settings, registered_versions: list[str], trained: Trained
) -> None:
    """The seed-compatibility contract.

    Versions trained on the same data with the same seed and test size share
    one golden set (one digest), whatever the estimator, so their gate results
    compare; another seed gives another golden set and digest. A gate measures
    each version on the golden set of its own run and records its digest; the
    values it measures are the ones training logged on that same set.
    """
    reseeded = train(model_settings, TrainRequest("breast_cancer", seed=7))
    policy = gates.parse_policy(
        {"checks": [{**ACCURACY, "threshold": 0.5}, {**F1, "threshold": 0.5}]}
    )

    results = {
        v: gates.evaluate_gate(model_settings, v, policy, record=False)
        for v in ("1", "3", reseeded.model_version)
    }

    digests = {v: r.golden_digest for v, r in results.items()}
    assert digests["1"] == digests["3"] == trained.results[0].golden_digest
    assert digests[reseeded.model_version] == reseeded.golden_digest != digests["1"]
    for version, result in results.items():
        logged = registry.get_version(model_settings, version).metrics
        observed = {c.name: c.observed for c in result.checks}
        assert observed == pytest.approx({k: logged[k] for k in observed})


@pytest.mark.integration
def test_a_foreign_version_is_judged_on_its_logged_metrics(
    model_settings: Settings, foreign_version: str
) -> None:
    policy = gates.parse_policy({"checks": [ACCURACY, F1]})

    result = gates.evaluate_gate(model_settings, foreign_version, policy, record=False)

    accuracy, f1 = result.checks
    assert (accuracy.passed, accuracy.observed) == (True, 0.95)
    assert accuracy.message.endswith("(as logged by the run)")
    assert not f1.passed
    assert f1.message == (
        f"f1: not measured (version {foreign_version} has no metric 'f1' and no "
        "golden set to compute it on)"
    )


@pytest.mark.integration
def test_what_if_measures_once_for_many_thresholds(
    model_settings: Settings, registered_versions: list[str]
) -> None:
    policy = gates.parse_policy({"checks": [ACCURACY]})
    infos = registry.list_versions(model_settings)
    progress: list[tuple[int, int]] = []

    measured = gates.what_if(
        model_settings,
        policy,
        infos,
        lambda done, total: progress.append((done, total)),
    )

    passing = {
        threshold: [
            i.version
            for i in infos
            if gates.verdict(
                policy.with_thresholds({"accuracy": threshold}), i, measured[i.version]
            ).passed
        ]
        for threshold in (0.85, 0.9, 0.99)
    }
    assert passing == {0.85: ["3", "2", "1"], 0.9: ["3", "1"], 0.99: []}
    assert progress == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.integration
def test_saving_a_policy_makes_it_the_policy_in_force_and_audits_it(
    settings: Settings, write_policy: PolicyWriter
) -> None:
    unpinned = replace(settings, policy_path=None)
    write_policy([ACCURACY], name="x.toml").rename(unpinned.saved_policy_path)
    before = gates.load_policy(unpinned)
    stricter = before.with_thresholds({"accuracy": 0.95})

    path = gates.save_policy(unpinned, stricter, "  too many bad releases ")

    assert path == unpinned.saved_policy_path
    assert path.read_text().startswith("# Saved by tester at ")
    assert gates.load_policy(unpinned).digest == stricter.digest
    (event,) = audit.history(unpinned, kinds=("policy",))
    assert event.reason == "too many bad releases"
    assert event.evidence["from_digest"] == before.digest
    assert event.evidence["to_digest"] == stricter.digest


@pytest.mark.parametrize(
    ("pinned", "reason", "message"),
    [
        (
            False,
            " ",
            "saving a gate policy needs a reason; say why the thresholds change.",
        ),
        (
            True,
            "stricter",
            "STUDIO_GATE_POLICY pins the policy to {path}; edit that file or unset "
            "the variable to save from here.",
        ),
    ],
)
def test_saving_a_policy_is_refused_without_reason_or_when_pinned(
    tmp_path: Path, write_policy: PolicyWriter, pinned: bool, reason: str, message: str
) -> None:
    path = write_policy([ACCURACY])
    env = {"STUDIO_HOME": str(tmp_path)}
    if pinned:
        env["STUDIO_GATE_POLICY"] = str(path)
    policy = gates.read_policy(path)

    with pytest.raises(PolicyError) as raised:
        gates.save_policy(load_settings(env), policy, reason)

    assert str(raised.value) == message.format(path=path)
