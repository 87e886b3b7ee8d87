"""Server settings from command-line flags and environment variables (flags win)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

STAGES = ("staging", "production")
# LitServe 0.2.19 refuses any other bind address (LitServer.run checks the host).
HOSTS = ("127.0.0.1", "0.0.0.0", "::")
LOG_LEVELS = ("debug", "info", "warning", "error")
# LitServe's request timeout; a batch must be collected well within it.
REQUEST_TIMEOUT_S = 30.0

_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs to start; build it with `parse_settings`."""

    model_name: str
    alias: str
    tracking_uri: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 16
    batch_timeout: float = 0.01
    max_payload_bytes: int = 1024 * 1024
    artifact_proxy_prefix: str | None = None
    log_level: str = "info"

    @property
    def stage(self) -> str:
        """The stage this server serves; the alias is the stage."""
        return self.alias

    @property
    def redacted_tracking_uri(self) -> str:
        """The tracking URI with any user:password part masked, for logs."""
        return redact_uri(self.tracking_uri)


# The image installs serving/ alone, so core.config keeps its own twin of these two.
def redact_uri(uri: str) -> str:
    """Mask credentials embedded in a URI (``https://user:pw@host``)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(
        (parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment)
    )


def redact_text(text: str) -> str:
    """Mask ``user:pw@`` parts of any URI inside free text, such as an error."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def parse_settings(
    argv: Sequence[str] | None, env: Mapping[str, str]
) -> ServerSettings:
    """Read settings from `argv` and `env`; a flag overrides its variable.

    Exits with status 2 and a usage message when a value is missing or invalid.
    """
    parser = _build_parser(env)
    args = parser.parse_args(argv)
    for flag, var, value in (
        ("--model-name", "MODEL_NAME", args.model_name),
        ("--alias", "MODEL_ALIAS", args.alias),
        ("--tracking-uri", "MLFLOW_TRACKING_URI", args.tracking_uri),
    ):
        if not value:
            parser.error(f"set {flag} or {var}")
    if args.batch_timeout >= REQUEST_TIMEOUT_S:
        parser.error(
            f"--batch-timeout/BATCH_TIMEOUT must be below the request timeout of "
            f"{REQUEST_TIMEOUT_S:g} s; got {args.batch_timeout:g}"
        )
    return ServerSettings(
        model_name=args.model_name,
        alias=args.alias,
        tracking_uri=args.tracking_uri,
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        batch_timeout=args.batch_timeout,
        max_payload_bytes=args.max_payload_bytes,
        artifact_proxy_prefix=args.artifact_proxy_prefix or None,
        log_level=args.log_level,
    )


def _build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving",
        description="Serve the model version that an MLflow alias points to.",
    )

    def option(
        flag: str, var: str, help: str, default: str | None = None, **kw: Any
    ) -> None:
        # argparse runs `type` over string defaults too, so a bad environment
        # value gets the same message as a bad flag.
        parser.add_argument(
            flag, default=env.get(var) or default, help=f"{help} [env {var}]", **kw
        )

    option("--model-name", "MODEL_NAME", "registered model name")
    option(
        "--alias",
        "MODEL_ALIAS",
        "alias to serve; it names the stage",
        type=_choice("--alias/MODEL_ALIAS", STAGES),
    )
    option("--tracking-uri", "MLFLOW_TRACKING_URI", "MLflow tracking URI")
    option(
        "--host",
        "HOST",
        "bind address",
        default="127.0.0.1",
        type=_choice("--host/HOST", HOSTS),
    )
    option(
        "--port",
        "PORT",
        "port",
        default="8000",
        type=_integer("--port/PORT", 1024, 65535),
    )
    option(
        "--max-batch-size",
        "MAX_BATCH_SIZE",
        "requests predicted together",
        default="16",
        type=_integer("--max-batch-size/MAX_BATCH_SIZE", 1, 4096),
    )
    option(
        "--batch-timeout",
        "BATCH_TIMEOUT",
        "seconds to wait to fill a batch",
        default="0.01",
        type=_seconds("--batch-timeout/BATCH_TIMEOUT"),
    )
    option(
        "--max-payload-bytes",
        "MAX_PAYLOAD_BYTES",
        "largest request body",
        default=str(1024 * 1024),
        type=_integer("--max-payload-bytes/MAX_PAYLOAD_BYTES", 1, 2**31),
    )
    option(
        "--artifact-proxy-prefix",
        "STUDIO_ARTIFACT_PROXY_PREFIX",
        "host artifact URI prefix to fetch through the tracking server's "
        "artifact proxy (mlflow-artifacts:/)",
    )
    option(
        "--log-level",
        "LOG_LEVEL",
        "log level",
        default="info",
        type=_choice("--log-level/LOG_LEVEL", LOG_LEVELS),
    )
    return parser


def _choice(name: str, allowed: Sequence[str]) -> Callable[[str], str]:
    def convert(value: str) -> str:
        if value not in allowed:
            options = ", ".join(repr(a) for a in allowed)
            raise argparse.ArgumentTypeError(
                f"{name} must be one of {options}; got {value!r}"
            )
        return value

    return convert


def _integer(name: str, low: int, high: int) -> Callable[[str], int]:
    def convert(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(
                f"{name} must be an integer from {low} to {high}; got {value!r}"
            )
        return number

    return convert


def _seconds(name: str) -> Callable[[str], float]:
    def convert(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 <= number < float("inf"):
            raise argparse.ArgumentTypeError(
                f"{name} must be a number of seconds >= 0; got {value!r}"
            )
        return number

    return convert
