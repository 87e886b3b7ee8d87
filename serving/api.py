"""The LitServe API: validate each request, predict a batch at once, answer each.

Runs in LitServe's spawned inference worker. LitServe 0.2.19 decodes every
request of a batch inside one ``try``: an ``HTTPException`` raised for one bad
request is sent to all requests of that batch. So nothing here raises for a
bad request; `decode_request` returns a `Rejection` that travels through
`predict` and becomes that request's own 4xx response in `encode_response`.
"""

# No `from __future__ import annotations` here: LitServe reads the annotations of
# decode_request and encode_response at runtime to type its FastAPI endpoint.

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import litserve as ls
import mlflow
import pandas as pd
from fastapi import Response
from fastapi.responses import JSONResponse
from mlflow.exceptions import MlflowException

from serving.logs import configure_logging
from serving.model import InputRejected, LoadedModel, load_model
from serving.payload import PayloadError, match_fitted, parse_payload
from serving.settings import ServerSettings, redact_text
from serving.status import StatusBoard, readiness

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
FIRST_RETRY_S = 2.0
LAST_RETRY_S = 60.0


@dataclass(frozen=True)
class Rejection:
    """A request answered with an error instead of a prediction."""

    status: int
    detail: str


@dataclass(frozen=True)
class Job:
    """A validated request and the model version it was validated against."""

    frame: pd.DataFrame
    model: LoadedModel


class ModelAPI(ls.LitAPI):
    """Serves the version the main process resolved; see the module docstring."""

    def __init__(self, settings: ServerSettings, board_dir: Path) -> None:
        super().__init__(
            max_batch_size=settings.max_batch_size,
            batch_timeout=settings.batch_timeout,
        )
        self.settings = settings
        self.board = StatusBoard(board_dir)
        # The one reference to the served model. Requests read it once; a newer
        # version replaces it whole, so no request sees a half-swapped model.
        self.model: LoadedModel | None = None

    def setup(self, device: str) -> None:
        """Start loading in the background so the server can answer meanwhile.

        A load failure raised here would make LitServe exit with status 1; a
        background loader instead reports it on /health and retries.
        """
        configure_logging(self.settings.log_level)
        mlflow.set_tracking_uri(self.settings.tracking_uri)
        threading.Thread(
            target=self._follow_target, name="model-loader", daemon=True
        ).start()

    def decode_request(self, request: dict[str, Any]) -> Job | Rejection:
        """Check the body against the served model's signature.

        A model without signature is checked against the columns it was fitted
        on, when scikit-learn recorded them; its predict checks the values.
        """
        model = self.model
        if model is None:
            board = self.board
            status, detail = readiness(board.read_target(), board.read_model())
            return Rejection(503, f"model is not ready ({status}): {detail}")
        try:
            frame = parse_payload(request, model.columns)
            if model.columns is None:
                frame = match_fitted(frame, model.fitted_names, model.fitted_count)
        except PayloadError as error:
            return Rejection(422, str(error))
        except (ValueError, TypeError, OverflowError) as error:
            # e.g. an integer too large for an int32 column
            return Rejection(422, f"could not read the input: {error}")
        return Job(frame, model)

    def predict(self, x: Any) -> Any:
        """Predict all jobs of a batch in one call per model version."""
        # LitServe passes a list when batching and a single item when
        # MAX_BATCH_SIZE is 1.
        items: list[Job | Rejection] = x if isinstance(x, list) else [x]
        outcomes: list[Any] = list(items)
        # Normally one group; two only if a newer version was swapped in between
        # decoding the requests of this batch.
        groups: dict[int, dict[int, Job]] = {}
        for index, item in enumerate(items):
            if isinstance(item, Job):
                groups.setdefault(id(item.model), {})[index] = item
        for jobs in groups.values():
            answers = self._predict_jobs(list(jobs.values()))
            for index, answer in zip(jobs, answers, strict=True):
                outcomes[index] = answer
        return outcomes if isinstance(x, list) else outcomes[0]

    def encode_response(self, output: Any) -> Response:
        """Turn a prediction or a rejection into this request's response."""
        if isinstance(output, Rejection):
            return JSONResponse({"detail": output.detail}, status_code=output.status)
        return JSONResponse(output)

    def _predict_jobs(self, jobs: list[Job]) -> list[dict[str, Any] | Rejection]:
        try:
            return self._predict_together(jobs)
        except Exception as error:
            if len(jobs) == 1:
                return [self._rejection(jobs[0], error)]
        # One request broke the batch: predict each alone so only it fails.
        outcomes: list[dict[str, Any] | Rejection] = []
        for job in jobs:
            try:
                outcomes.extend(self._predict_together([job]))
            except Exception as error:
                outcomes.append(self._rejection(job, error))
        return outcomes

    def _predict_together(self, jobs: list[Job]) -> list[dict[str, Any] | Rejection]:
        model = jobs[0].model
        frames = [job.frame for job in jobs]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        predictions, probabilities = model.predict(frame)
        logger.debug(
            "predicted %d rows for %d requests with version %s",
            len(frame),
            len(jobs),
            model.version,
        )
        answers: list[dict[str, Any] | Rejection] = []
        start = 0
        for job in frames:
            end = start + len(job)
            answers.append(
                {
                    "predictions": predictions[start:end],
                    "probabilities": (
                        None if probabilities is None else probabilities[start:end]
                    ),
                    "model_version": model.version,
                    "stage": self.settings.stage,
                }
            )
            start = end
        return answers

    def _rejection(self, job: Job, error: Exception) -> Rejection:
        # Called for a job predicted alone, so the error is about its own rows.
        if isinstance(error, MlflowException):
            # MLflow's schema enforcement refused a value our checks let through.
            return Rejection(422, f"the model rejected the input: {error.message}")
        if isinstance(error, InputRejected):
            return Rejection(422, f"the model rejected the input: {error}")
        logger.error(
            "prediction failed with version %s", job.model.version, exc_info=error
        )
        return Rejection(
            500,
            f"prediction failed with version {job.model.version}: "
            f"{type(error).__name__}: {error}",
        )

    def _follow_target(self) -> None:
        # Load whatever version the main process published, and keep retrying a
        # failed load with backoff: the tracking server may come back.
        retry_in = FIRST_RETRY_S
        retry_at = 0.0
        while True:
            try:
                target = self.board.read_target()
                if self._should_load(target) and time.monotonic() >= retry_at:
                    assert target is not None
                    if self._load(target, retry_in):
                        retry_in = FIRST_RETRY_S
                    else:
                        retry_at = time.monotonic() + retry_in
                        retry_in = min(retry_in * 2, LAST_RETRY_S)
            except Exception:
                logger.exception("model loader failed; trying again")
            time.sleep(POLL_INTERVAL_S)

    def _should_load(self, target: dict[str, Any] | None) -> bool:
        if target is None or target.get("state") != "resolved":
            return False
        return self.model is None or self.model.version != str(target["version"])

    def _load(self, target: dict[str, Any], retry_in: float) -> bool:
        version = str(target["version"])
        uri = redact_text(target["model_uri"])
        self._publish("loading", f"loading version {version} from {uri}")
        started = time.monotonic()
        try:
            model = load_model(target, self.board.download_dir)
        except Exception as error:
            detail = f"{redact_text(str(error))} (retrying in {retry_in:g} s)"
            logger.error("%s", detail)
            self._publish("error", detail)
            return False
        self.model = model
        self._publish("ready", None)
        logger.info(
            "loaded version %s of '%s' in %.1f s",
            version,
            self.settings.model_name,
            time.monotonic() - started,
        )
        return True

    def _publish(self, state: str, detail: str | None) -> None:
        served = None if self.model is None else self.model.describe()
        self.board.publish_model({"state": state, "detail": detail, "served": served})
