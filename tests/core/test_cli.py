"""The command line: exit codes, messages, the stdin gate contract, the user path.

Each `python -m core` subprocess costs seconds of MLflow imports, so real
subprocesses prove what only a process can (exit codes, exact bytes, a new
user's path) and `core.cli.main` runs in-process for the rest.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core import audit, cli, registry
from core.cli import main
from core.config import Settings
from tests.conftest import ACCURACY_POLICY, REPO_ROOT, free_port, write_policy_file

UseEnv = Callable[[Mapping[str, str]], None]
CONTRACT_INPUT = b'{"run_id": "abc", "accuracy": 0.8975, "model_version": 1}'


def cli_env(env: Mapping[str, str]) -> dict[str, str]:
    """The process environment without the developer's Studio settings, plus `env`."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STUDIO_", "MLFLOW_TRACKING_", "GATE_"))
        and k != "ACCURACY_THRESHOLD"
    }
    return {**kept, **env}


def start_cli(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `python -m core ARGS` from the checkout, as a user would."""
    return subprocess.Popen(
        [sys.executable, "-m", "core", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(env),
        cwd=REPO_ROOT,
    )


def finish(
    process: subprocess.Popen[bytes], stdin: bytes = b""
) -> tuple[int, bytes, bytes]:
    out, err = process.communicate(stdin, timeout=300)
    return process.returncode, out, err


def run_cli(args: list[str], env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run `python -m core ARGS` to the end; (exit code, stdout, stderr)."""
    code, out, err = finish(start_cli(args, env))
    return code, out.decode(), err.decode()


@pytest.fixture
def plain_env(tmp_path: Path) -> dict[str, str]:
    """A Studio environment whose store is never opened (usage errors)."""
    policy = write_policy_file(tmp_path / "policy.toml", ACCURACY_POLICY)
    return {"STUDIO_HOME": str(tmp_path / "unused"), "STUDIO_GATE_POLICY": str(policy)}


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `core.cli.main` in-process; (exit code, stdout, stderr)."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# Real processes ---------------------------------------------------------------


def test_stdin_gate_ignores_unrelated_settings(tmp_path: Path) -> None:
    env = {
        "STUDIO_HOME": str(tmp_path),
        "ACCURACY_THRESHOLD": "0.85",
        "STUDIO_DEPLOY_BACKEND": "bogus",
        "STUDIO_STAGING_PORT": "8001",
    }
    code, out, err = finish(start_cli(["gate", "--stdin"], env), CONTRACT_INPUT)
    assert (code, err) == (0, b"")
    assert json.loads(out)["passed"] is True


def test_stdin_gate_contract_byte_for_byte(tmp_path: Path) -> None:
    env = {"STUDIO_HOME": str(tmp_path)}
    failing = start_cli(["gate", "--stdin"], {**env, "ACCURACY_THRESHOLD": "0.90"})
    passing = start_cli(["gate", "--stdin"], {**env, "ACCURACY_THRESHOLD": "0.85"})

    assert finish(failing, CONTRACT_INPUT + b"\n") == (
        2,
        b'{"passed": false, "accuracy": 0.8975, "threshold": 0.9, '
        b'"model_version": 1, "run_id": "abc"}\n',
        b"",
    )
    assert finish(passing, CONTRACT_INPUT + b"\n") == (
        0,
        b'{"passed": true, "accuracy": 0.8975, "threshold": 0.85, '
        b'"model_version": 1, "run_id": "abc"}\n',
        b"",
    )


def test_a_usage_error_exits_1_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    code, out, err = run_cli(["promote", "--to", "qa"], {"STUDIO_HOME": str(tmp_path)})

    assert (code, out) == (1, "")
    assert err == (
        "error: argument --to: invalid choice: 'qa' (choose from 'staging', "
        "'production') (see `python -m core promote --help`)\n"
    )


@pytest.mark.integration
def test_a_new_user_trains_gates_promotes_rolls_back_and_reads_history(
    tmp_path: Path,
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "new-user"  # does not exist yet: the first run makes it
    policy = write_policy_file(tmp_path / "policy.toml", ACCURACY_POLICY)
    env = {
        "STUDIO_HOME": str(home),
        "STUDIO_GATE_POLICY": str(policy),
        "STUDIO_ACTOR": "newbie",
        "STUDIO_MIRROR_STAGES": "true",
    }

    code, out, _ = run_cli(["train", "--dataset", "breast_cancer"], env)
    assert code == 0 and out.startswith("Registered studio-classifier version 1 (run ")
    code, out, _ = run_cli(["gate"], env)
    assert code == 0 and "version 1 under policy" in out and "PASSED" in out
    code, out, _ = run_cli(["promote", "--to", "staging"], env)
    assert code == 0 and out.startswith("staging of studio-classifier -> version 1")
    release = ["--skip-smoke", "--reason", "first release"]
    code, out, err = run_cli(["promote", "--to", "production", *release], env)
    assert (
        code == 0
        and "Failed preconditions bypassed by your reason: smoke passed" in out
    )
    assert "Warning" not in err  # the mirrored stage move warns inside MLflow

    use_env(env)
    for args in (
        ["train", "--dataset", "breast_cancer", "--param", "C=0.5"],
        ["gate", "2"],
        ["promote", "2", "--to", "staging"],
        ["promote", "--to", "production", "--skip-smoke", "--reason", "v2"],
    ):
        assert call(capsys, *args)[0] == 0, args

    code, out, _ = run_cli(["rollback", "--reason", "v2 misbehaves"], env)
    assert (code, out) == (
        0,
        "Rolled back production of studio-classifier from version 2 to version 1\n",
    )
    code, out, _ = run_cli(["history", "--json"], env)
    events = json.loads(out)
    assert [(e["kind"], e["alias"], e["version"]) for e in events] == [
        ("rollback", "production", "1"),
        ("promote", "production", "2"),
        ("promote", "staging", "2"),
        ("gate", None, "2"),
        ("promote", "production", "1"),
        ("promote", "staging", "1"),
        ("gate", None, "1"),
    ]
    assert {e["actor"] for e in events} == {"newbie"}

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    aliases = client.get_registered_model("studio-classifier").aliases
    assert {a: str(v) for a, v in aliases.items()} == {
        "staging": "2",
        "production": "1",
    }
    version = client.get_model_version("studio-classifier", "1")
    assert version.tags["studio.gate.passed"] == "true"
    assert version.tags["studio.production.reason"] == "v2 misbehaves"
    assert version.current_stage == "Production"  # STUDIO_MIRROR_STAGES
    code, out, _ = call(capsys, "status", "--json")
    shown = json.loads(out)
    assert shown["aliases"] == {"staging": "2", "production": "1"}
    assert [v["gate_passed"] for v in shown["versions"]] == [True, True]


# In-process -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [],
            "the following arguments are required: COMMAND (see `python -m core "
            "--help`)",
        ),
        (
            ["status", "--bogus"],
            "unrecognized arguments: --bogus (see `python -m core --help`)",
        ),
        (
            ["train"],
            "the following arguments are required: --dataset (see `python -m core "
            "train --help`)",
        ),
        (
            ["status", "--limit", "many"],
            "argument --limit: 'many' is not a whole number of 1 or more (see "
            "`python -m core status --help`)",
        ),
        (
            ["history", "--limit", "0"],
            "argument --limit: '0' is not a whole number of 1 or more (see "
            "`python -m core history --help`)",
        ),
        (
            ["gate", "1.0"],
            "argument version: '1.0' is not a model version; versions are whole "
            "numbers like 3 (see `python -m core gate --help`)",
        ),
        (
            ["promote", "--to", "staging", "--expect", "two"],
            "argument --expect: 'two' is not a model version; versions are whole "
            "numbers like 3 (see `python -m core promote --help`)",
        ),
        (
            ["probe", "--stage", "staging", "--timeout", "-1"],
            "argument --timeout: '-1' is not a number of seconds of at least 0.1 "
            "(see `python -m core probe --help`)",
        ),
        (
            ["deploy", "--stage", "staging", "--timeout", "0"],
            "argument --timeout: '0' is not a number of seconds of at least 1 "
            "(see `python -m core deploy --help`)",
        ),
        (
            ["train", "--dataset", "iris", "--seed", "-5"],
            "argument --seed: '-5' is not a whole number of 0 or more (see "
            "`python -m core train --help`)",
        ),
        (
            ["gate", "--stdin", "--threshold", "accuracy=0.5", "--no-record"],
            "gate --stdin takes its input from stdin and its threshold from "
            "ACCURACY_THRESHOLD; drop --threshold, --no-record.",
        ),
        (
            ["history", "--alias", "qa"],
            "argument --alias: invalid choice: 'qa' (choose from 'staging', "
            "'production') (see `python -m core history --help`)",
        ),
        (
            ["train", "--dataset", "iris", "--param", "C"],
            "--param 'C' is not NAME=VALUE; e.g. --param C=0.5.",
        ),
        (
            ["train", "--dataset", "iris", "--param", "C=strong"],
            "C='strong' is not a float; for example C=1.0.",
        ),
        (
            ["promote", "--to", "production", "--skip-smoke"],
            '--skip-smoke needs --reason "..." saying why; it is recorded.',
        ),
        (
            ["promote", "--to", "staging", "--override"],
            '--override needs --reason "..." saying why; it is recorded.',
        ),
        (
            ["gate", "--threshold", "accuracy=high"],
            "--threshold accuracy=high needs a number; e.g. --threshold accuracy=0.9.",
        ),
        (
            ["gate", "--threshold", "recall=0.8", "--no-record"],
            "the policy has no check 'recall'; its checks are: accuracy.",
        ),
    ],
)
def test_bad_command_lines_exit_1_with_one_line(
    plain_env: dict[str, str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    use_env(plain_env)

    assert call(capsys, *args) == (1, "", f"error: {message}\n")


def test_an_unknown_command_names_the_valid_ones(
    use_env: UseEnv, plain_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    use_env(plain_env)

    code, out, err = call(capsys, "deploi")

    assert (code, out) == (1, "")
    assert err.startswith("error: argument COMMAND: invalid choice: 'deploi' ")
    assert "'train', 'gate', 'promote', 'rollback', 'status', 'history'" in err


def test_a_bad_environment_variable_exits_1(
    use_env: UseEnv, plain_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    use_env({**plain_env, "STUDIO_STAGING_PORT": "eighty"})

    assert call(capsys, "status") == (
        1,
        "",
        "error: STUDIO_STAGING_PORT='eighty' is not a TCP port; use a number "
        "1-65535.\n",
    )


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (
            "accuracy=0.9",
            'stdin is not JSON (Expecting value at line 1); send {"run_id": "...", '
            '"accuracy": 0.93, "model_version": 1}.',
        ),
        (
            '{"run_id": "a", "accuracy": "high", "model_version": 1}',
            'accuracy "high" is not a number; send e.g. 0.93.',
        ),
    ],
)
def test_bad_stdin_for_the_gate_exits_1(
    use_env: UseEnv,
    plain_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str,
    message: str,
) -> None:
    use_env({**plain_env, "ACCURACY_THRESHOLD": "0.9"})
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))

    assert call(capsys, "gate", "--stdin") == (1, "", f"error: {message}\n")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = call(capsys, "--help")

    assert code == 0
    assert out.startswith("usage: python -m core ")


@pytest.mark.integration
def test_status_of_an_empty_store_says_how_to_start(
    use_env: UseEnv, studio_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    use_env(studio_env)

    code, out, _ = call(capsys, "status")

    assert code == 0
    assert out.splitlines()[1:] == [
        "  staging    -> -",
        "  production -> -",
        "No versions yet. Train one: python -m core train --dataset breast_cancer",
    ]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "code", "verdict"),
    [
        (["gate", "1"], 0, "PASSED"),
        (["gate", "2"], 2, "FAILED"),
        (["gate", "2", "--threshold", "accuracy=0.85", "--no-record"], 0, "PASSED"),
    ],
)
def test_gate_exit_codes_follow_the_verdict(
    model_env: dict[str, str],
    registered_versions: list[str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    verdict: str,
) -> None:
    use_env(model_env)

    exit_code, out, _ = call(capsys, *args)

    assert exit_code == code
    assert out.splitlines()[0].endswith(f": {verdict}")


@pytest.mark.integration
def test_gate_json_is_the_full_result(
    model_env: dict[str, str],
    registered_versions: list[str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env(model_env)

    code, out, _ = call(capsys, "gate", "3", "--json")

    result = json.loads(out)
    assert code == 0 and result["passed"] is True
    assert [c["name"] for c in result["checks"]] == ["accuracy"]


@pytest.mark.integration
def test_an_unknown_version_exits_1_with_the_next_step(
    model_env: dict[str, str],
    model_settings: Settings,
    registered_versions: list[str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env(model_env)

    assert call(capsys, "gate", "9") == (
        1,
        "",
        f"error: {model_settings.model_name} has no version 9; list versions with "
        "`python -m core status`.\n",
    )


@pytest.mark.integration
def test_the_actor_comes_from_the_flag_or_the_environment(
    model_env: dict[str, str],
    model_settings: Settings,
    registered_versions: list[str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env({**model_env, "STUDIO_ACTOR": "alice"})

    call(capsys, "gate", "1")
    call(capsys, "promote", "1", "--to", "staging", "--actor", "ci-bot")

    actors = [(e.kind, e.actor) for e in audit.history(model_settings)]
    assert actors == [("promote", "ci-bot"), ("gate", "alice")]


@pytest.mark.integration
def test_common_flags_work_before_the_command_too(
    model_env: dict[str, str],
    model_settings: Settings,
    registered_versions: list[str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env(model_env)

    call(capsys, "--actor", "bob", "gate", "1")
    code, out, _ = call(capsys, "--json", "status")

    assert audit.history(model_settings, limit=1)[0].actor == "bob"
    assert code == 0 and json.loads(out)["model_name"] == model_settings.model_name


@pytest.mark.integration
def test_a_what_if_threshold_is_not_recorded(
    model_env: dict[str, str],
    model_settings: Settings,
    registered_versions: list[str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env(model_env)
    before = len(audit.history(model_settings, kinds=("gate",)))

    code, _, err = call(capsys, "gate", "1", "--threshold", "accuracy=0.1")

    assert code == 0 and "what-if evaluation, not recorded" in err
    assert len(audit.history(model_settings, kinds=("gate",))) == before


@pytest.mark.integration
def test_a_stale_expect_exits_1_and_leaves_the_alias(
    model_env: dict[str, str],
    model_settings: Settings,
    registered_versions: list[str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env(model_env)
    call(capsys, "gate", "1")
    call(capsys, "gate", "3")
    call(capsys, "promote", "1", "--to", "staging")

    code, _, err = call(capsys, "promote", "3", "--to", "staging", "--expect", "none")

    assert code == 1
    assert err == (
        f"error: staging of {model_settings.model_name} moved meanwhile: expected "
        "nothing, found version 1. Refresh and try again.\n"
    )
    assert registry.alias_version(model_settings, "staging") == "1"


@pytest.mark.integration
def test_history_filters_by_several_kinds(
    model_env: dict[str, str],
    registered_versions: list[str],
    use_env: UseEnv,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_env(model_env)
    call(capsys, "gate", "1")
    call(capsys, "promote", "1", "--to", "staging", "--reason", "ok")

    code, out, _ = call(
        capsys, "history", "--kind", "promote", "--kind", "gate", "--json"
    )

    assert code == 0
    assert [e["kind"] for e in json.loads(out)] == ["promote", "gate"]


@pytest.mark.integration
def test_credentials_never_reach_output_or_logs_with_a_real_server(
    server_env: dict[str, str],
    mlflow_server: str,
    use_env: UseEnv,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    user, password = "ann-7c1f", "pw-93e1b0d2"
    with_userinfo = mlflow_server.replace("http://", f"http://{user}:{password}@")
    use_env(
        {
            **server_env,
            "MLFLOW_TRACKING_URI": with_userinfo,  # the server ignores basic auth
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password,
        }
    )
    caplog.set_level(logging.DEBUG)
    outputs = []

    for args in (
        ["train", "--dataset", "iris", "--json", "-v"],
        ["gate", "--debug"],
        ["promote", "--to", "staging", "-v"],
        ["status"],
        ["history"],
    ):
        code = main(args)
        captured = capfd.readouterr()
        outputs += [captured.out, captured.err]
        assert code == 0, captured.err
    trained = json.loads(outputs[0])  # --json stdout is JSON only

    closed = f"http://{user}:{password}@127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", closed)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    assert main(["status"]) == 1
    captured = capfd.readouterr()
    outputs += [captured.out, captured.err]

    assert trained["model_version"] == "1"
    assert "http://***@127.0.0.1:" in outputs[-1]
    for text in [*outputs, caplog.text]:
        assert password not in text and user not in text


def test_written_out_choices_match_the_registries() -> None:
    from core.data import list_builtin
    from core.deployment import MIN_LAUNCH_TIMEOUT_S
    from core.training import ESTIMATORS

    assert list(cli.DATASET_NAMES) == list_builtin()
    assert list(cli.ESTIMATOR_NAMES) == sorted(ESTIMATORS)
    assert cli.MIN_LAUNCH_TIMEOUT_S == MIN_LAUNCH_TIMEOUT_S
