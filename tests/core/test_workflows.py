"""The GitHub workflows' CLI steps, run locally as real subprocesses.

Each `python -m core` step of .github/workflows/stage.yml (on push) and
release.yml (on manual dispatch) is executed with bash, in order, against a
temporary store with the process backend and free ports. A step renamed,
reordered or broken in the CLI fails here before it fails on GitHub.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import PROJECT_ROOT, load_settings
from core.deployment import backend_for
from core.registry import alias_version
from tests.conftest import ACCURACY_POLICY, new_store, write_policy_file
from tests.core.conftest import server_env

pytestmark = pytest.mark.serving

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
EXPRESSION = re.compile(r"\$\{\{\s*([^}]+?)\s*\}\}")


def load(name: str) -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def cli_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps that call the CLI on the success path, in order."""
    (job,) = workflow["jobs"].values()
    return [
        step
        for step in job["steps"]
        if str(step.get("run", "")).startswith("python -m core") and "if" not in step
    ]


def substitute(text: str, contexts: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in contexts, f"the test does not know ${{{{ {name} }}}}"
        return contexts[name]

    return EXPRESSION.sub(value, text)


def run_workflow(
    workflow: dict[str, Any],
    base_env: dict[str, str],
    contexts: Mapping[str, str],
    output_dir: Path,
) -> list[subprocess.CompletedProcess[str]]:
    (job,) = workflow["jobs"].values()
    env = dict(base_env)
    for scope in (workflow.get("env", {}), job.get("env", {})):
        env.update({k: substitute(str(v), contexts) for k, v in scope.items()})
    results = []
    contexts = dict(contexts)
    for index, step in enumerate(cli_steps(workflow)):
        # As on a runner: each step gets its own GITHUB_OUTPUT file, and what it
        # writes there becomes steps.<id>.outputs.<name> for the later steps.
        outputs = output_dir / f"step-{index}.out"
        step_env = {
            **env,
            **{k: substitute(str(v), contexts) for k, v in step.get("env", {}).items()},
            "GITHUB_OUTPUT": str(outputs),
        }
        result = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            env=step_env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, (
            f"step {step['name']!r} ({step['run']}) exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
        results.append(result)
        if "id" in step and outputs.exists():
            for line in outputs.read_text().splitlines():
                name, _, value = line.partition("=")
                contexts[f"steps.{step['id']}.outputs.{name}"] = value
    return results


@pytest.fixture
def local_env(tmp_path: Path, migrated_db: Path) -> Iterator[dict[str, str]]:
    """The runner's environment: a fresh store, free ports, this venv first.

    The gate policy is pinned (accuracy >= 0.9) so a change to the shipped
    policy cannot fail this test; the steps are what it checks.
    """
    home = new_store(tmp_path / "studio", migrated_db)
    policy = write_policy_file(tmp_path / "policy.toml", ACCURACY_POLICY)
    env = {**os.environ, **server_env(home), "STUDIO_GATE_POLICY": str(policy)}
    for name in ("MLFLOW_TRACKING_URI", "STUDIO_MODEL_NAME", "STUDIO_IMAGE"):
        env.pop(name, None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    try:
        yield env
    finally:
        settings = load_settings(env)
        for stage in ("staging", "production"):
            backend_for(settings, stage).stop(stage)


def secrets_for(env: Mapping[str, str]) -> dict[str, str]:
    tracking_uri = load_settings(env).tracking_uri
    return {
        "secrets.MLFLOW_TRACKING_URI": tracking_uri,
        "secrets.MLFLOW_TRACKING_USERNAME": "",
        "secrets.MLFLOW_TRACKING_PASSWORD": "",
        "github.actor": "tests",
        "github.sha": "0" * 40,
    }


def test_push_workflow_trains_gates_stages_deploys_and_smokes() -> None:
    workflow = load("stage.yml")
    assert "push" in workflow["on"]
    commands = [step["run"].split()[3] for step in cli_steps(workflow)]
    assert commands == ["train", "gate", "promote", "deploy", "smoke"]


def test_dispatch_workflow_promotes_deploys_and_probes() -> None:
    workflow = load("release.yml")
    assert workflow["on"]["workflow_dispatch"]["inputs"]["version"]["required"]
    commands = [step["run"].split()[3] for step in cli_steps(workflow)]
    assert commands == ["promote", "deploy", "probe"]


def test_workflows_read_tracking_credentials_from_secrets() -> None:
    for name in ("stage.yml", "release.yml"):
        env = load(name)["env"]
        for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD"):
            assert env[variable] == f"${{{{ secrets.{variable} }}}}"


def test_workflow_steps_run_locally_end_to_end(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    contexts = secrets_for(local_env)
    staged = run_workflow(load("stage.yml"), local_env, contexts, tmp_path)
    settings = load_settings(local_env)
    version = alias_version(settings, "staging")
    assert version is not None
    assert f"Registered {settings.model_name} version {version} " in staged[0].stdout

    released = run_workflow(
        load("release.yml"),
        local_env,
        {**contexts, "inputs.version": version, "inputs.reason": "workflow test"},
        tmp_path,
    )
    health = json.loads(released[-1].stdout)
    assert (health["stage"], health["model_version"]) == ("production", version)
