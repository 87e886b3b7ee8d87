"""Alias resolution, and loading through a real tracking server's artifact proxy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sklearn.linear_model import LogisticRegression

from serving.registry import ResolutionError, proxied_uri, resolve_target
from serving.settings import ServerSettings
from tests.conftest import free_port, stop_group
from tests.serving.conftest import (
    INT_MODEL,
    MIXED_MODEL,
    ModelStore,
    create_store,
    int_model_data,
    records,
    register_model,
    start_server,
)

PREFIX = "file:///abs/.studio/artifacts"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            f"{PREFIX}/1/models/m-abc/artifacts",
            "mlflow-artifacts:/1/models/m-abc/artifacts",
        ),
        (
            f"{PREFIX}/1/models/m-abc/artifacts/",
            "mlflow-artifacts:/1/models/m-abc/artifacts/",
        ),
        ("file:///abs/.studio/artifacts-old/1/models/m", None),
        ("s3://bucket/1/models/m-abc/artifacts", None),
    ],
)
def test_proxied_uri_rewrites_only_uris_under_the_prefix(
    uri: str, expected: str | None
) -> None:
    assert proxied_uri(uri, PREFIX) == expected
    assert proxied_uri(uri, PREFIX + "/") == expected


def test_proxied_uri_without_prefix_is_none() -> None:
    assert proxied_uri(f"{PREFIX}/1/models/m", None) is None


def settings_for(store: ModelStore, alias: str, **changes: str) -> ServerSettings:
    return ServerSettings(
        model_name=changes.pop("model_name", MIXED_MODEL),
        alias=alias,
        tracking_uri=store.tracking_uri,
        **changes,  # type: ignore[arg-type]
    )


def test_resolve_pins_the_aliased_version_and_its_metrics(
    model_store: ModelStore,
) -> None:
    target = resolve_target(settings_for(model_store, "production"))

    assert target.version == "2"
    assert target.model_uri == f"models:/{MIXED_MODEL}/2"
    assert target.run_id == model_store.run_ids[(MIXED_MODEL, "2")]
    assert target.metrics == model_store.metrics[(MIXED_MODEL, "2")]


def test_resolve_names_a_missing_model_and_what_to_do(model_store: ModelStore) -> None:
    with pytest.raises(ResolutionError) as raised:
        resolve_target(settings_for(model_store, "staging", model_name="nope"))

    assert "could not resolve alias 'staging' of model 'nope'" in str(raised.value)
    assert "promote a version of 'nope' to staging" in str(raised.value)


def test_resolve_names_an_unreachable_tracking_server() -> None:
    settings = ServerSettings(
        model_name="m",
        alias="staging",
        tracking_uri=f"http://u:secret@127.0.0.1:{free_port()}",
    )

    with pytest.raises(ResolutionError) as raised:
        resolve_target(settings)

    assert "tracking server at http://***@127.0.0.1" in str(raised.value)
    assert "is unreachable" in str(raised.value)
    assert "secret" not in str(raised.value)


@dataclass
class MovedStore:
    """A store whose artifact folder was moved after the model was logged.

    The registry still records ``file://<root>/artifacts/...``, which no longer
    exists; a tracking server serves the moved folder as its artifact store.
    """

    store: ModelStore
    tracking_url: str
    prefix: str
    access_log: Path


@pytest.fixture(scope="module")
def moved_store(
    tmp_path_factory: pytest.TempPathFactory, migrated_db: Path
) -> Iterator[MovedStore]:
    store = create_store(tmp_path_factory.mktemp("moved"), migrated_db)
    frame, labels = int_model_data()
    register_model(store, INT_MODEL, frame, labels, LogisticRegression(max_iter=500))
    store.client().set_registered_model_alias(INT_MODEL, "staging", "1")
    moved = store.root / "served-artifacts"
    shutil.move(store.artifact_root, moved)

    port = free_port()
    access_log = store.root / "mlflow-server.log"
    with access_log.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                store.tracking_uri,
                "--artifacts-destination",
                str(moved),
                "--serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # The job runner (huey consumers) is not needed and slows start-up.
            env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield MovedStore(store, url, store.artifact_root.as_uri(), access_log)
    finally:
        stop_group(process)


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"mlflow server at {url} did not come up")


@pytest.mark.serving
@pytest.mark.integration
def test_prefix_loads_through_the_tracking_servers_artifact_proxy(
    moved_store: MovedStore, tmp_path: Path
) -> None:
    server = start_server(
        tmp_path,
        INT_MODEL,
        "staging",
        moved_store.tracking_url,
        {"STUDIO_ARTIFACT_PROXY_PREFIX": moved_store.prefix},
    )
    try:
        health = server.wait_for_health()
        frame, _ = int_model_data()
        answer = httpx.post(
            f"{server.url}/predict", json={"inputs": records(frame.head(2))}
        )
    finally:
        server.stop()

    assert health["model_uri"].startswith("mlflow-artifacts:/serving-tests/models/")
    assert answer.status_code == 200
    proxied = "GET /api/2.0/mlflow-artifacts/artifacts/serving-tests/models/"
    assert proxied in moved_store.access_log.read_text()


@pytest.mark.serving
@pytest.mark.integration
def test_without_prefix_a_host_path_gives_503_naming_it(
    moved_store: MovedStore, tmp_path: Path
) -> None:
    server = start_server(tmp_path, INT_MODEL, "staging", moved_store.tracking_url)
    try:
        health = server.wait_for_health(status=503)
        deadline = time.monotonic() + 60
        while health["status"] != "error" and time.monotonic() < deadline:
            health = server.wait_for_health(status=503)
    finally:
        server.stop()

    assert health["status"] == "error"
    assert f"could not load version 1 from models:/{INT_MODEL}/1" in health["detail"]
    assert (
        f"(artifacts at {moved_store.prefix}/serving-tests/models/"
        in (health["detail"])
    )
    assert "set STUDIO_ARTIFACT_PROXY_PREFIX" in health["detail"]
    assert "retrying in" in health["detail"]
