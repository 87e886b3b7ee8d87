"""Build the LitServer and add our /health, /metadata and error handling.

These routes run in LitServe's forked HTTP process, which never holds the
model: they read the state the other processes publish on the `StatusBoard`.
"""

from __future__ import annotations

from typing import Any

import litserve as ls
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from litserve.utils import WorkerSetupStatus
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api import ModelAPI
from serving.settings import REQUEST_TIMEOUT_S, ServerSettings, redact_text
from serving.status import StatusBoard, readiness

# LitServe's own check answers plain "ok"/"not ready" and wins over any route we
# add on its path, so it moves aside for our JSON /health.
LITSERVE_HEALTH_PATH = "/litserve/health"
_EXAMPLE = '{"inputs": [{"column": value}]}'
HEALTH_FIELDS = (
    "model_name",
    "stage",
    "model_version",
    "run_id",
    "model_uri",
    "loaded_at",
)


def build_server(settings: ServerSettings, board: StatusBoard) -> ls.LitServer:
    """Create the server; call ``run()`` on it to serve."""
    server = ls.LitServer(
        ModelAPI(settings, board.directory),
        accelerator="cpu",
        workers_per_device=1,
        timeout=REQUEST_TIMEOUT_S,
        healthcheck_path=LITSERVE_HEALTH_PATH,
    )
    app = server.app
    app.add_middleware(PayloadLimit, max_bytes=settings.max_payload_bytes)
    app.add_exception_handler(RequestValidationError, _invalid_body)

    def snapshot() -> tuple[JSONResponse | None, dict[str, Any]]:
        """The 503 answer while not ready, else the facts of the served version."""
        status, detail, target, model = _state(server, board)
        facts: dict[str, Any] = {
            "model_name": settings.model_name,
            "stage": settings.stage,
        }
        served = (model or {}).get("served")
        if status != "ok" or target is None or not served:
            refusal = {"status": status, "detail": detail, **facts}
            return JSONResponse(refusal, status_code=503), facts
        facts.update(
            model_version=served["model_version"],
            run_id=served["run_id"],
            model_uri=redact_text(served["model_uri"]),
            loaded_at=served["loaded_at"],
            signature=served["signature"],
            classes=served["classes"],
            metrics=target.get("metrics", {}),
        )
        return None, facts

    async def health() -> JSONResponse:
        """200 once the worker serves a model; 503 with the reason before."""
        refusal, facts = snapshot()
        if refusal is not None:
            return refusal
        return JSONResponse(
            {"status": "ok", **{key: facts[key] for key in HEALTH_FIELDS}}
        )

    async def metadata() -> JSONResponse:
        """Signature, classes and training metrics of the served version."""
        refusal, facts = snapshot()
        return refusal or JSONResponse(facts)

    # /health stays open when LIT_SERVER_API_KEY is set, so Docker's HEALTHCHECK
    # and the studio's probes need no key; it shows no data and no signature.
    app.add_api_route("/health", health, methods=["GET"])
    app.add_api_route(
        "/metadata",
        metadata,
        methods=["GET"],
        dependencies=[Depends(server.setup_auth())],
    )
    return server


def _state(
    server: ls.LitServer, board: StatusBoard
) -> tuple[str, str | None, dict[str, Any] | None, dict[str, Any] | None]:
    # LitServe records its worker's setup in a manager dict it creates in run();
    # copy() reads it in one round trip to the manager process.
    setup_status = getattr(server, "workers_setup_status", None)
    workers = setup_status.copy() if setup_status is not None else {}
    target, model = board.read_target(), board.read_model()
    if not workers or any(v != WorkerSetupStatus.READY for v in workers.values()):
        return "loading", "the inference worker is starting", target, model
    status, detail = readiness(target, model)
    return status, detail, target, model


async def _invalid_body(
    request: Request, error: RequestValidationError
) -> JSONResponse:
    # FastAPI checks that the /predict body is a JSON object before LitServe sees
    # it; its default answer is a list of pydantic errors echoing the input.
    first = error.errors()[0]
    kind = first.get("type")
    if kind == "json_invalid":
        reason = first.get("ctx", {}).get("error", "invalid JSON")
        position = first.get("loc", ("body", "?"))[-1]
        return _detail(
            400,
            f"request body is not valid JSON ({reason} at character {position}); "
            f"send an object like {_EXAMPLE}",
        )
    if kind == "missing":
        return _detail(400, f"request body is empty; send an object like {_EXAMPLE}")
    if kind == "dict_type":
        return _detail(
            422,
            "request body must be a JSON object with 'inputs' or 'dataframe_split' "
            "(sent with Content-Type: application/json)",
        )
    return _detail(422, "; ".join(str(e.get("msg")) for e in error.errors()))


def _detail(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class PayloadLimit:
    """Answer 413 for a request body over `max_bytes`, declared or streamed.

    LitServe's own ``max_payload_size`` answers "Payload too large" without
    saying what the limit is; this names it and the setting that raises it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(int(declared))(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._message(f"over {self.max_bytes}"))
            return message

        await self.app(scope, counted, send)

    def _too_large(self, size: int) -> JSONResponse:
        return _detail(413, self._message(str(size)))

    def _message(self, size: str) -> str:
        return (
            f"request body has {size} bytes; the limit is {self.max_bytes} bytes "
            f"(MAX_PAYLOAD_BYTES); send fewer rows per request"
        )
