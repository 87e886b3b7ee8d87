"""The docker backend for real: build the image, run staging, probe, smoke, stop.

Two ways for a container to reach the registry are covered: the embedded
sqlite store (core starts a local `mlflow server` with the artifact proxy) and
an explicit `mlflow server` given as MLFLOW_TRACKING_URI. Containers use the
network mode of STUDIO_DOCKER_NETWORK (host unless set). Switching a stage from
the process backend to Docker is covered too, including a switch that must be
refused before the process server is stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from core import audit, gates, promotion
from core.config import Settings, load_settings
from core.deployment import DockerBackend, ProcessBackend, ServerStatus
from core.deployment.base import read_record
from core.deployment.containers import LABEL_STAGE, connect, home_label
from core.deployment.processes import group_exists
from core.deployment.tracking_server import is_tracking_server_running
from core.errors import DeploymentError
from core.probes import probe, smoke
from core.rollout import deploy
from core.training import TrainRequest, train
from tests.conftest import ACCURACY_POLICY, Trained, write_policy_file
from tests.core.conftest import Store, make_store, server_env

pytestmark = pytest.mark.docker

NETWORK = os.environ.get("STUDIO_DOCKER_NETWORK") or "host"
SECRET = "not-a-real-password-4711"


def docker_settings(settings: Settings) -> Settings:
    return replace(settings, deploy_backend="docker", docker_network=NETWORK)


@pytest.fixture(scope="module")
def embedded(
    docker_engine: str, tmp_path_factory: pytest.TempPathFactory, trained: Trained
) -> Store:
    """A model on the embedded sqlite store, version 1 on staging."""
    root = tmp_path_factory.mktemp("docker-embedded")
    made = make_store(root, trained, server_env(root / "home"))
    return replace(made, settings=docker_settings(made.settings))


@pytest.fixture(scope="module")
def embedded_staging(embedded: Store) -> Iterator[tuple[DockerBackend, ServerStatus]]:
    """The staging container of `embedded`; the password must not leak."""
    backend = DockerBackend(embedded.settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
        status = backend.launch("staging")
    try:
        yield backend, status
    finally:
        backend.stop("staging")


def test_container_serves_the_staging_version(
    embedded: Store, embedded_staging: tuple[DockerBackend, ServerStatus]
) -> None:
    _, status = embedded_staging
    assert status.state == "running"
    health = httpx.get(f"{status.url}/health").json()
    assert (health["stage"], health["model_version"]) == (
        "staging",
        embedded.versions[0],
    )


def test_container_loads_artifacts_through_the_tracking_server(
    embedded: Store, embedded_staging: tuple[DockerBackend, ServerStatus]
) -> None:
    health = httpx.get(f"{embedded_staging[1].url}/health").json()
    assert health["model_uri"].startswith("mlflow-artifacts:/")
    assert is_tracking_server_running(embedded.settings)


def test_container_is_labelled_and_restarts_unless_stopped(
    embedded: Store, embedded_staging: tuple[DockerBackend, ServerStatus]
) -> None:
    backend, status = embedded_staging
    container = backend.client.containers.get(str(status.ident))
    assert container.labels[LABEL_STAGE] == "staging"
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"


def test_container_gets_credentials_but_never_logs_them(
    embedded_staging: tuple[DockerBackend, ServerStatus],
) -> None:
    backend, status = embedded_staging
    container = backend.client.containers.get(str(status.ident))
    assert f"MLFLOW_TRACKING_PASSWORD={SECRET}" in container.attrs["Config"]["Env"]
    assert SECRET not in backend.logs("staging", lines=1000)


def test_probe_and_smoke_pass_through_the_container(
    embedded: Store, embedded_staging: tuple[DockerBackend, ServerStatus]
) -> None:
    assert probe(embedded.settings, "staging").light == "green"
    result = smoke(embedded.settings, "staging", rows=20)
    assert (result.passed, result.mismatches) == (True, 0)


def test_other_network_mode_is_refused_while_a_container_uses_the_tracking_server(
    embedded: Store, embedded_staging: tuple[DockerBackend, ServerStatus]
) -> None:
    backend, status = embedded_staging
    promotion.promote(
        embedded.settings, embedded.versions[0], "production", override_reason="test"
    )
    other = "bridge" if NETWORK == "host" else "host"
    mixed = replace(embedded.settings, docker_network=other)
    listening = (read_record(embedded.settings, "tracking") or {})["host"]
    name = backend.client.containers.get(str(status.ident)).name
    try:
        with pytest.raises(DeploymentError) as refused:
            DockerBackend(mixed).launch("production")
    finally:
        DockerBackend(mixed).stop("production")  # in case it was not refused
    assert f"listens on {listening} for the staging container {name}" in str(
        refused.value
    )
    assert f"Deploy with STUDIO_DOCKER_NETWORK={NETWORK} as well" in str(refused.value)
    assert (read_record(embedded.settings, "tracking") or {})["host"] == listening
    assert probe(embedded.settings, "staging").light == "green"


def test_stop_leaves_nothing_of_ours_running(
    embedded: Store, embedded_staging: tuple[DockerBackend, ServerStatus]
) -> None:
    backend, _ = embedded_staging
    assert backend.stop("staging").state == "stopped"
    assert backend.leftovers() == []
    assert not is_tracking_server_running(embedded.settings)


@pytest.fixture
def remote(
    docker_engine: str, mlflow_server: str, tmp_path: Path
) -> Iterator[Settings]:
    """A version trained on a real `mlflow server`, gated and on staging."""
    if NETWORK != "host":
        pytest.skip("the test mlflow server listens on loopback; needs host network")
    policy = write_policy_file(tmp_path / "policy.toml", ACCURACY_POLICY)
    env = {
        **server_env(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "STUDIO_MODEL_NAME": f"docker-remote-{tmp_path.name}",
        "STUDIO_GATE_POLICY": str(policy),
    }
    settings = docker_settings(load_settings(env))
    version = train(settings, TrainRequest("breast_cancer")).model_version
    assert gates.evaluate_gate(settings, version).passed
    promotion.promote(settings, version, "staging", reason="docker test")
    backend = DockerBackend(settings)
    try:
        yield settings
    finally:
        backend.stop("staging")
        assert backend.leftovers() == []


def test_container_serves_from_an_explicit_tracking_server(remote: Settings) -> None:
    status = DockerBackend(remote).launch("staging")
    assert status.state == "running"
    assert probe(remote, "staging").light == "green"
    assert smoke(remote, "staging", rows=10).passed
    assert not is_tracking_server_running(remote)  # none needed: it is a server


@pytest.fixture(scope="module")
def switching(
    docker_engine: str, tmp_path_factory: pytest.TempPathFactory, trained: Trained
) -> Store:
    """A model whose staging the tests move from the process backend to Docker."""
    root = tmp_path_factory.mktemp("docker-switch")
    made = make_store(root, trained, server_env(root / "home"))
    return replace(made, settings=docker_settings(made.settings))


@pytest.fixture
def process_staging(switching: Store) -> Iterator[ServerStatus]:
    """Staging of `switching` served as a process; both backends stop it after."""
    status = ProcessBackend(switching.settings).launch("staging")
    try:
        yield status
    finally:
        ProcessBackend(switching.settings).stop("staging")
        DockerBackend(switching.settings).stop("staging")


def test_switch_refused_by_a_foreign_container_keeps_the_process_serving(
    switching: Store, process_staging: ServerStatus
) -> None:
    settings = switching.settings
    client = connect()
    stranger = client.containers.create(
        settings.base_image,
        ["sleep", "600"],
        name=f"promotion-studio-staging-{home_label(settings)}",
    )
    try:
        with pytest.raises(DeploymentError, match="is not labelled as ours"):
            deploy(settings, "staging", backend="docker")
    finally:
        stranger.remove(force=True)
        client.close()
    after = ProcessBackend(settings).status("staging")
    assert (after.state, after.ident) == ("running", process_staging.ident)
    [event] = audit.history(settings, kinds=("deploy",), alias="staging", limit=1)
    assert (event.outcome, event.evidence["backend"]) == ("failed", "docker")


def test_switch_to_docker_replaces_the_process_server(
    switching: Store, process_staging: ServerStatus
) -> None:
    result = deploy(switching.settings, "staging", backend="docker")
    assert (result.backend, result.probe.light) == ("docker", "green")
    assert process_staging.ident is not None
    assert not group_exists(int(process_staging.ident))
