"""The `docker` backend: each stage's server as a container of the serving image.

Everything we create carries our labels, and everything we list, stop or
remove is found by those labels, never by name alone: ``managed`` marks
Promotion Studio, ``stage`` the stage, and ``home`` a digest of the data
directory, so two checkouts (or a test's temporary store) sharing one engine
never touch each other's containers.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import docker
from docker.errors import APIError, BuildError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from core.config import PROJECT_ROOT, SECRET_ENV_VARS, Settings, Stage
from core.deployment import tracking_server
from core.deployment.base import (
    DEFAULT_LAUNCH_TIMEOUT_S,
    LOG_TAIL_LINES,
    Progress,
    ServerStatus,
    announce,
    fetch_health,
    now_iso,
    read_record,
    require_alias,
    require_launch_timeout,
    require_port,
    server_url,
    stage_lock,
    tail,
    wait_until_healthy,
    write_record,
)
from core.errors import BackendUnavailableError, DeploymentError

logger = logging.getLogger(__name__)

LABEL_MANAGED = "promotion-studio.managed"
LABEL_STAGE = "promotion-studio.stage"
LABEL_HOME = "promotion-studio.home"
LABEL_SOURCE = "promotion-studio.source"
PING_TIMEOUT_S = 3.0
API_TIMEOUT_S = 60.0
BUILD_TIMEOUT_S = 1800.0
STOP_TIMEOUT_S = 20
CONTAINER_HOST_ALIAS = "host.docker.internal"
# The Dockerfile's server stage; its `app` stage (compose.yaml) is never built here.
SERVING_TARGET = "serving"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def connect(timeout: float = API_TIMEOUT_S) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket).

    Raises:
        BackendUnavailableError: no engine answers.
    """
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        # docker-py nests the socket error in a tuple's repr; its last quoted
        # part is the useful one ("No such file or directory").
        quoted = re.findall(r"'([^']+)'", str(exc))
        why = quoted[-1] if quoted else _first_line(exc)
        raise BackendUnavailableError(
            f"no Docker engine answered at {where} ({why}); start Docker, or set "
            "STUDIO_DEPLOY_BACKEND=process to run servers as local processes."
        ) from exc
    return client


def engine_version(timeout: float = PING_TIMEOUT_S) -> str:
    """The engine's version, asking with a short timeout.

    Raises:
        BackendUnavailableError: no engine answers.
    """
    client = connect(timeout)
    try:
        return str(client.version().get("Version", "?"))
    finally:
        client.close()


def home_label(settings: Settings) -> str:
    """A short digest naming this data directory on a shared engine."""
    return hashlib.sha256(str(settings.data_dir).encode()).hexdigest()[:12]


def source_digest(root: Path = PROJECT_ROOT) -> str:
    """A digest of what the serving image is built from (Dockerfile, serving/).

    Stored as a label on the images we build, so a changed server is rebuilt
    instead of silently reused.
    """
    digest = hashlib.sha256()
    paths = [root / "Dockerfile", root / ".dockerignore"]
    paths += sorted(
        p
        for p in (root / "serving").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    for path in paths:
        if path.exists():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class DockerBackend:
    """Runs each stage's server as a labelled container.

    Args:
        settings: image name, network mode, ports and the tracking store.
        launch_timeout: seconds `launch` waits for a healthy /health.

    Raises:
        DeploymentError: `launch_timeout` is too short for any server.
    """

    name = "docker"

    def __init__(
        self, settings: Settings, launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT_S
    ) -> None:
        self.settings = settings
        self.launch_timeout = require_launch_timeout(launch_timeout)
        self._client: docker.DockerClient | None = None
        # The source digest whose image this backend has already confirmed, so
        # `prepare` followed by `launch` checks (and announces) the image once.
        self._image_digest: str | None = None

    @property
    def client(self) -> docker.DockerClient:
        """The engine client, connected on first use."""
        if self._client is None:
            self._client = connect()
        return self._client

    def build(self, progress: Progress | None = None, force: bool = False) -> str:
        """Build the serving image from the checkout unless a current one exists.

        An image we built from the same sources is reused; an image we did not
        build (no source label, e.g. pulled from your registry) is used as is.

        Returns:
            The image id.

        Raises:
            DeploymentError: the build failed (with its last output lines).
        """
        say = announce(progress)
        name = self.settings.docker_image
        digest = source_digest()
        if not force:
            try:
                image = self.client.images.get(name)
            except ImageNotFound:
                pass
            else:
                built_from = image.labels.get(LABEL_SOURCE)
                if built_from in (None, digest):
                    say(f"Using image {name} ({_size(image.attrs)})")
                    return str(image.id)
                say(f"Image {name} was built from older sources; rebuilding")
        return self._build(name, digest, say)

    def prepare(self, stage: Stage, progress: Progress | None = None) -> None:
        """Check or make everything the stage's container needs, running nothing.

        The alias must be set, the container name free (or ours), the port
        free (or the stage's own server's); the image is built if it is not
        current, and with an embedded store the local tracking server is
        started where containers of this network mode reach it.

        Raises:
            BackendUnavailableError: no Docker engine answers.
            DeploymentError: any of those checks failed; the message says
                what to do.
        """
        say = announce(progress)
        with stage_lock(self.settings, stage):
            self._prepare(stage, say)

    def launch(self, stage: Stage, progress: Progress | None = None) -> ServerStatus:
        """Run the stage's container (replacing ours) and wait for health.

        Raises:
            DeploymentError: a check of `prepare` failed, or the server did not
                become healthy (its last log lines are quoted and the failed
                container removed).
        """
        say = announce(progress)
        with stage_lock(self.settings, stage):
            version = self._prepare(stage, say)
            self._remove_ours(stage, say)
            require_port(self.settings, stage, self.name)
            environment = self._environment(stage, say)
            say(f"Starting the {stage} container for version {version}")
            container = self._run(stage, environment)
            url = server_url(self.settings, stage)
            try:
                health = wait_until_healthy(
                    url,
                    timeout=self.launch_timeout,
                    gone=lambda: _gone(container),
                    log_tail=lambda: self._tail(container, LOG_TAIL_LINES),
                    say=say,
                )
            except DeploymentError:
                _remove(container)
                self._record(stage, "stopped", container, "failed to become healthy")
                self._stop_tracking_server_if_idle()
                raise
        say(
            f"{stage} container {container.short_id} up at {url}, serving version "
            f"{health.get('model_version')}"
        )
        return self.status(stage)

    def restart(self, stage: Stage, progress: Progress | None = None) -> ServerStatus:
        """Launch again; `launch` already replaces a running container of ours."""
        return self.launch(stage, progress)

    def stop(self, stage: Stage) -> ServerStatus:
        """Stop and remove the stage's container(s) of ours."""
        with stage_lock(self.settings, stage):
            for container in self._ours(stage):
                logger.info("Stopping the %s container %s", stage, container.short_id)
                _remove(container)
            record = read_record(self.settings, stage)
            if record is not None and record.get("backend") == self.name:
                record.update(
                    state="stopped", stopped_at=now_iso(), stop_reason="stopped"
                )
                write_record(self.settings, stage, record)
        self._stop_tracking_server_if_idle()
        return self.status(stage)

    def status(self, stage: Stage) -> ServerStatus:
        """The state of the stage's container, found by its labels."""
        ours = self._ours(stage)
        if not ours:
            return self._status_without_container(stage)
        container = ours[0]
        state = container.attrs.get("State", {})
        started = _started_at(state)
        where = f"container {container.short_id} ({container.name})"
        if container.status == "running":
            code, body = fetch_health(server_url(self.settings, stage), timeout=1.0)
            if code == 200:
                detail = f"{where}, serving version {body.get('model_version')}"
                return self._status(stage, "running", container, detail, started)
            waiting = body.get("detail") or "not answering yet"
            return self._status(
                stage, "starting", container, f"{where}, not ready: {waiting}", started
            )
        if container.status in ("created", "restarting"):
            detail = f"{where} is {container.status}"
            if state.get("ExitCode"):
                detail += f" after exiting with code {state['ExitCode']}"
            return self._status(stage, "starting", container, detail, started)
        detail = f"{where} exited with code {state.get('ExitCode', '?')}"
        return self._status(stage, "exited", container, detail, started)

    def _status_without_container(self, stage: Stage) -> ServerStatus:
        record = read_record(self.settings, stage) or {}
        if record.get("backend") != self.name:
            return self._status(
                stage,
                "missing",
                None,
                f"no {stage} container; run python -m core deploy --stage {stage}",
            )
        if record.get("state") == "running":
            return self._status(
                stage,
                "exited",
                None,
                f"container {record.get('container_name')} is gone (removed outside "
                "Promotion Studio)",
            )
        return self._status(
            stage, "stopped", None, f"container stopped at {record.get('stopped_at')}"
        )

    def logs(self, stage: Stage, lines: int = 200) -> str:
        """The last `lines` lines of the stage's container output."""
        ours = self._ours(stage)
        return self._tail(ours[0], lines) if ours else ""

    def leftovers(self) -> list[str]:
        """Names of every container of ours under this data directory."""
        found = self.client.containers.list(
            all=True,
            filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_HOME}={self._home}"]},
        )
        return [c.name for c in found]

    @property
    def _home(self) -> str:
        return home_label(self.settings)

    def _ours(self, stage: Stage) -> list[Container]:
        labels = [
            f"{LABEL_MANAGED}=true",
            f"{LABEL_STAGE}={stage}",
            f"{LABEL_HOME}={self._home}",
        ]
        try:
            found: list[Container] = self.client.containers.list(
                all=True, filters={"label": labels}
            )
        except APIError as exc:
            raise DeploymentError(f"Docker refused to list containers: {exc}") from exc
        return found

    def _container_name(self, stage: Stage) -> str:
        return f"promotion-studio-{stage}-{self._home}"

    def _prepare(self, stage: Stage, say: Progress) -> str:
        version = require_alias(self.settings, stage)
        self._require_name(stage)
        require_port(self.settings, stage, self.name, replacing=True)
        self._ensure_image(say)
        if self.settings.is_embedded:
            self._ensure_tracking_server(stage, say)
        return version

    def _require_name(self, stage: Stage) -> None:
        # A container of another checkout, or one made by hand, may hold our
        # name; only one carrying our labels is ours to replace.
        name = self._container_name(stage)
        try:
            other = self.client.containers.get(name)
        except NotFound:
            return
        except APIError as exc:
            raise DeploymentError(
                f"Docker refused to look up container {name}: {_first_line(exc)}"
            ) from exc
        labels = other.labels or {}
        if (
            labels.get(LABEL_MANAGED) == "true"
            and labels.get(LABEL_HOME) == self._home
            and labels.get(LABEL_STAGE) == stage
        ):
            return
        raise DeploymentError(
            f"a container named {other.name} exists but is not labelled as ours; "
            "remove it yourself (docker rm -f NAME) and deploy again."
        )

    def _ensure_image(self, say: Progress) -> None:
        digest = source_digest()
        if digest == self._image_digest and self._has_image():
            return
        self.build(say)
        self._image_digest = digest

    def _has_image(self) -> bool:
        try:
            self.client.images.get(self.settings.docker_image)
        except ImageNotFound:
            return False
        return True

    def _ensure_tracking_server(self, stage: Stage, say: Progress) -> None:
        host_network = self.settings.docker_network == "host"
        bind = "127.0.0.1" if host_network else self._bridge_gateway()
        tracking_server.ensure_tracking_server(
            self.settings, bind, say, dependents=lambda: self._dependents(stage)
        )

    def _dependents(self, stage: Stage) -> list[tracking_server.Dependent]:
        """Containers of ours that reach the tracking server in the other mode.

        The stage being launched is left out: its container is replaced.
        """
        labels = [f"{LABEL_MANAGED}=true", f"{LABEL_HOME}={self._home}"]
        try:
            found: list[Container] = self.client.containers.list(
                all=True, filters={"label": labels}
            )
        except APIError as exc:
            raise DeploymentError(f"Docker refused to list containers: {exc}") from exc
        dependents = []
        for container in found:
            network = _network_mode(container)
            their_stage = container.labels.get(LABEL_STAGE, "?")
            if (
                their_stage != stage
                and network != self.settings.docker_network
                and container.status not in ("exited", "dead")
            ):
                dependents.append(
                    tracking_server.Dependent(their_stage, container.name, network)
                )
        return dependents

    def _build(self, name: str, digest: str, say: Progress) -> str:
        say(f"Building image {name} from {PROJECT_ROOT / 'Dockerfile'}")
        # A build can stay silent for minutes (pip); its client waits longer.
        builder = connect(BUILD_TIMEOUT_S)
        api = builder.api
        output: list[str] = []
        image_id = ""
        try:
            for chunk in api.build(
                path=str(PROJECT_ROOT),
                dockerfile="Dockerfile",
                target=SERVING_TARGET,
                tag=name,
                buildargs={"BASE_IMAGE": self.settings.base_image},
                labels={LABEL_MANAGED: "true", LABEL_SOURCE: digest},
                network_mode="host" if self.settings.docker_network == "host" else None,
                rm=True,
                forcerm=True,
                decode=True,
            ):
                if "error" in chunk:
                    raise BuildError(chunk["error"], output)
                text = str(chunk.get("stream", "")).rstrip()
                if text:
                    output.append(text)
                    if text.startswith("Step "):
                        say(f"Build: {text}")
                if "aux" in chunk and "ID" in chunk["aux"]:
                    image_id = str(chunk["aux"]["ID"])
        except (BuildError, APIError) as exc:
            raise DeploymentError(
                f"building image {name} failed: {_first_line(exc)}. Last build "
                f"output:\n{tail(chr(10).join(output), LOG_TAIL_LINES)}"
            ) from exc
        finally:
            builder.close()
        image = self.client.images.get(name)
        say(f"Built image {name} ({_size(image.attrs)})")
        return image_id or str(image.id)

    def _environment(self, stage: Stage, say: Progress) -> dict[str, str]:
        port = self.settings.port_for(stage)
        host_network = self.settings.docker_network == "host"
        environment = {
            "MODEL_NAME": self.settings.model_name,
            "MODEL_ALIAS": stage,
            "HOST": self.settings.serve_host if host_network else "0.0.0.0",
            "PORT": str(port),
        }
        if self.settings.is_embedded:
            # `_prepare` started it, but the other stage's `stop` may have found
            # it idle since we removed our old container; this is a no-op if not.
            self._ensure_tracking_server(stage, say)
            seen_as = "127.0.0.1" if host_network else CONTAINER_HOST_ALIAS
            environment["MLFLOW_TRACKING_URI"] = tracking_server.tracking_server_url(
                self.settings, seen_as
            )
            # The registry records artifact locations as host file URIs; the
            # server rewrites those under this prefix to the tracking server's
            # artifact proxy (serving/registry.py, proxied_uri).
            environment["STUDIO_ARTIFACT_PROXY_PREFIX"] = (
                self.settings.artifact_root.as_uri()
            )
        else:
            environment["MLFLOW_TRACKING_URI"] = self._reachable_uri(
                self.settings.tracking_uri, host_network, say
            )
        for name in SECRET_ENV_VARS:
            if os.environ.get(name):
                environment[name] = os.environ[name]
        return environment

    def _reachable_uri(self, uri: str, host_network: bool, say: Progress) -> str:
        parts = urlsplit(uri)
        if host_network or parts.hostname not in LOOPBACK_NAMES:
            return uri
        # In a bridge network the container's loopback is its own; the host is
        # reached through the gateway name Docker maps with host-gateway.
        netloc = parts.netloc.replace(parts.hostname or "", CONTAINER_HOST_ALIAS, 1)
        say(
            f"The tracking server listens on the host's loopback; containers will "
            f"use {CONTAINER_HOST_ALIAS} (the server must listen on the docker0 "
            "address and allow that Host header)"
        )
        return urlunsplit(parts._replace(netloc=netloc))

    def _bridge_gateway(self) -> str:
        try:
            network = self.client.networks.get("bridge")
        except (NotFound, APIError) as exc:
            raise DeploymentError(
                f"Docker has no default bridge network ({_first_line(exc)}); set "
                "STUDIO_DOCKER_NETWORK=host."
            ) from exc
        for config in network.attrs.get("IPAM", {}).get("Config") or []:
            if config.get("Gateway"):
                return str(config["Gateway"])
            if config.get("Subnet") and ":" not in config["Subnet"]:
                return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
        raise DeploymentError(
            "cannot tell the address of Docker's bridge gateway; set "
            "STUDIO_DOCKER_NETWORK=host."
        )

    def _run(self, stage: Stage, environment: dict[str, str]) -> Container:
        port = self.settings.port_for(stage)
        options: dict[str, Any] = {}
        if self.settings.docker_network == "host":
            options["network_mode"] = "host"
        else:
            options["ports"] = {f"{port}/tcp": (self.settings.serve_host, port)}
            options["extra_hosts"] = {CONTAINER_HOST_ALIAS: "host-gateway"}
        try:
            container: Container = self.client.containers.run(
                self.settings.docker_image,
                name=self._container_name(stage),
                detach=True,
                environment=environment,
                labels={
                    LABEL_MANAGED: "true",
                    LABEL_STAGE: stage,
                    LABEL_HOME: self._home,
                },
                restart_policy={"Name": "unless-stopped"},
                **options,
            )
        except (APIError, ImageNotFound) as exc:
            raise DeploymentError(
                f"Docker could not start the {stage} container: {_first_line(exc)}"
            ) from exc
        self._record(stage, "running", container)
        return container

    def _remove_ours(self, stage: Stage, say: Progress) -> None:
        for container in self._ours(stage):
            say(f"Removing the previous {stage} container {container.short_id}")
            _remove(container)

    def _record(
        self, stage: Stage, state: str, container: Container, reason: str = ""
    ) -> None:
        record = {
            "backend": self.name,
            "stage": stage,
            "state": state,
            "container_id": container.id,
            "container_name": container.name,
            "image": self.settings.docker_image,
            "port": self.settings.port_for(stage),
            "url": server_url(self.settings, stage),
            "started_at": now_iso(),
        }
        if state == "stopped":
            record.update(stopped_at=now_iso(), stop_reason=reason)
        write_record(self.settings, stage, record)

    def _stop_tracking_server_if_idle(self) -> None:
        if not self.settings.is_embedded:
            return
        idle = not any(self._ours(stage) for stage in ("staging", "production"))
        if idle and tracking_server.stop_tracking_server(self.settings):
            logger.info("No containers of ours remain; stopped the tracking server")

    def _tail(self, container: Container, lines: int) -> str:
        try:
            raw: bytes = container.logs(tail=lines)
        except (NotFound, APIError):
            return ""
        return raw.decode("utf-8", errors="replace")

    def _status(
        self,
        stage: Stage,
        state: str,
        container: Container | None,
        detail: str,
        started: datetime | None = None,
    ) -> ServerStatus:
        return ServerStatus(
            stage=stage,
            backend=self.name,
            state=state,
            url=server_url(self.settings, stage),
            ident=container.short_id if container is not None else None,
            started_at=started,
            detail=detail,
        )


def _gone(container: Container) -> str | None:
    try:
        container.reload()
    except NotFound:
        return f"(container {container.short_id}) was removed"
    code = container.attrs.get("State", {}).get("ExitCode")
    if container.status in ("exited", "dead"):
        return f"(container {container.short_id}) exited with code {code}"
    if container.status == "restarting" or container.attrs.get("RestartCount", 0):
        return (
            f"(container {container.short_id}) crashed and is being restarted "
            f"(exit code {code})"
        )
    return None


def _network_mode(container: Container) -> str:
    mode = container.attrs.get("HostConfig", {}).get("NetworkMode")
    return "host" if mode == "host" else "bridge"


def _remove(container: Container) -> None:
    try:
        container.stop(timeout=STOP_TIMEOUT_S)
        container.remove(force=True)
    except NotFound:
        pass
    except APIError as exc:
        raise DeploymentError(
            f"Docker could not remove container {container.short_id}: "
            f"{_first_line(exc)}"
        ) from exc


def _started_at(state: dict[str, Any]) -> datetime | None:
    text = str(state.get("StartedAt") or "")
    if not text or text.startswith("0001-"):
        return None
    # Docker prints nanoseconds; Python reads at most microseconds.
    head, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")[:6]
    return datetime.fromisoformat(f"{head}.{fraction or '0'}+00:00")


def _size(attrs: dict[str, Any]) -> str:
    return f"{int(attrs.get('Size', 0)) / 1e6:.0f} MB"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
