"""Background training jobs: a separate process per job, its state in a folder.

A job lives in ``<data_dir>/jobs/<id>/``: ``request.json`` (what to train),
``settings.json``, ``status.json`` (state, progress, result or error), ``job.log``
and any uploaded file. The worker (``python -m core.jobs run <folder>``) is the
only writer of ``status.json`` while it lives, so a job outlives a page switch, a
browser reload and a restart of the app; readers poll the folder.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import pandas as pd

from core.config import PROJECT_ROOT, Settings
from core.data import FILE_SUFFIXES, read_table
from core.errors import DataError, JobError, StudioError
from core.tracking import quiet_mlflow_warnings
from core.training import Progress, TrainRequest, train

logger = logging.getLogger(__name__)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running")
STATUS_FILE = "status.json"
REQUEST_FILE = "request.json"
SETTINGS_FILE = "settings.json"
LOG_FILE = "job.log"
PID_FILE = "worker.pid"
CANCEL_GRACE_SECONDS = 10.0
_JOB_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# Popen handles of the workers this process started: polling them reaps the
# exited ones, which would otherwise linger as zombies that still look alive.
_children: dict[str, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


@dataclass(frozen=True)
class Upload:
    """A file a user handed to the app: its original name and its bytes."""

    name: str
    data: bytes


@dataclass(frozen=True)
class Job:
    """One background job as last recorded on disk.

    Attributes:
        job_id: the folder name, sortable by creation time.
        state: queued (process starting), running, succeeded, failed, cancelled.
        progress: 0 to 1.
        message: the latest step, in words.
        request: what was asked (the `TrainRequest` fields).
        result: on success, the `TrainResult` as a dict (model_version, metrics).
        error: on failure, a message saying what was wrong and what to do.
        pid: the worker process, once known.
    """

    job_id: str
    path: Path
    kind: str
    state: JobState
    progress: float
    message: str
    request: Mapping[str, Any]
    created_at: str
    updated_at: str
    actor: str = ""
    pid: int | None = None
    result: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def is_active(self) -> bool:
        """True while the job is queued or running."""
        return self.state in ACTIVE_STATES

    @property
    def version(self) -> str | None:
        """The model version a succeeded training job registered."""
        return str(self.result["model_version"]) if self.result else None

    @property
    def title(self) -> str:
        """A short description such as "random_forest on wine"."""
        dataset = Path(str(self.request.get("dataset", "?"))).name
        return f"{self.request.get('estimator', '?')} on {dataset}"


def start_training(
    settings: Settings, request: TrainRequest, upload: Upload | None = None
) -> Job:
    """Start training `request` in a new worker process and return its job.

    An upload is saved into the job's folder first and trained from there, so
    it is kept with the job. Bad data is reported by the job, not raised here.

    Raises:
        DataError: the upload is not a .csv or .parquet file.
        JobError: the job folder or the worker process cannot be created.
    """
    if upload is not None:
        _upload_suffix(upload.name)  # refuse before anything is written
    job_id = _new_job_id()
    folder = jobs_dir(settings) / job_id
    try:
        folder.mkdir(parents=True)
        if upload is not None:
            request = dataclasses.replace(
                request, dataset=str(_save_upload(folder, upload))
            )
        _write_json(folder / REQUEST_FILE, _request_dict(request))
        _write_json(folder / SETTINGS_FILE, _settings_dict(settings))
        now = _now()
        _write_json(
            folder / STATUS_FILE,
            {
                "kind": "train",
                "state": "queued",
                "progress": 0.0,
                "message": "Starting a training process (loading libraries)",
                "created_at": now,
                "updated_at": now,
                "actor": settings.actor,
            },
        )
    except OSError as exc:
        raise JobError(
            f"cannot create job folder {folder}: {exc.strerror}; check that "
            f"STUDIO_HOME ({settings.data_dir}) is writable."
        ) from exc
    _spawn(settings, job_id, folder)
    logger.info("Started training job %s (%s)", job_id, _describe(request))
    return read_job(settings, job_id)


def read_job(settings: Settings, job_id: str) -> Job:
    """The job as recorded now; a worker that died mid-run reads as failed.

    Raises:
        JobError: no such job, or its status file is unreadable.
    """
    folder = _job_folder(settings, job_id)
    job = _load(folder)
    if job.is_active and not _is_alive(job):
        # The worker may have written its last word just before exiting.
        job = _load(folder)
        if job.is_active and not _is_alive(job):
            code = _exit_code(job.job_id)
            job = _finish(
                folder,
                "failed",
                error="the training process ended without reporting a result"
                + (f" (exit code {code})" if code is not None else "")
                + "; see the job log, then start the job again.",
            )
    return job


def list_jobs(settings: Settings, limit: int = 20) -> list[Job]:
    """The newest jobs first (unreadable folders are skipped with a warning)."""
    root = jobs_dir(settings)
    if not root.is_dir():
        return []
    names = sorted(
        (p.name for p in root.iterdir() if _JOB_ID.match(p.name)), reverse=True
    )
    found: list[Job] = []
    for name in names[:limit]:
        try:
            found.append(read_job(settings, name))
        except JobError as exc:
            logger.warning("Skipping job %s: %s", name, exc)
    return found


def read_log(settings: Settings, job_id: str, lines: int = 200) -> list[str]:
    """The last `lines` lines of the job's log (its progress and any traceback)."""
    path = _job_folder(settings, job_id) / LOG_FILE
    if not path.exists():
        return []
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 256 * lines))  # about 256 bytes a line
        tail = handle.read().decode("utf-8", errors="replace").splitlines()
    return tail[-lines:]


def cancel(settings: Settings, job_id: str) -> Job:
    """Stop a queued or running job: SIGTERM to its worker's pid, SIGKILL later.

    Only the pid recorded for this job is signalled, and only while that process
    still runs this job's folder. A finished job is returned unchanged.

    Raises:
        JobError: no such job.
    """
    job = read_job(settings, job_id)
    if not job.is_active:
        return job
    if job.pid is not None and _is_alive(job):
        _signal(job.pid, signal.SIGTERM)
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while _is_alive(job) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_alive(job):
            logger.warning("Job %s ignored SIGTERM; killing pid %d", job_id, job.pid)
            _signal(job.pid, signal.SIGKILL)
            time.sleep(0.2)
    job = _load(job.path)
    if job.is_active:  # killed before it could record its own end
        job = _finish(job.path, "cancelled", message="Cancelled")
    logger.info("Cancelled job %s", job_id)
    return job


def wait(
    settings: Settings, job_id: str, timeout: float = 300.0, poll: float = 0.2
) -> Job:
    """Block until the job ends; return it.

    Raises:
        JobError: the job is still active after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        job = read_job(settings, job_id)
        if not job.is_active:
            return job
        if time.monotonic() > deadline:
            raise JobError(
                f"job {job_id} is still {job.state} after {timeout:.0f} s "
                f"({job.message}); look at its log or cancel it."
            )
        time.sleep(poll)


def preview_upload(upload: Upload, rows: int | None = 1000) -> pd.DataFrame:
    """Read an uploaded CSV or Parquet file (its first `rows` rows; None: all).

    Raises:
        DataError: the file type is not supported or the content is unreadable;
            the message names the file as uploaded, not the temporary copy.
    """
    suffix = _upload_suffix(upload.name)
    with tempfile.TemporaryDirectory(prefix="studio-upload-") as tmp:
        path = Path(tmp) / f"{_safe_stem(upload.name)}{suffix}"
        path.write_bytes(upload.data)
        try:
            frame = read_table(path)
        except DataError as exc:
            # Readers quote the path they opened (pyarrow does); the temporary
            # folder means nothing to the person who uploaded the file.
            text = str(exc).replace(str(path), path.name)
            raise DataError(text.replace(path.name, upload.name)) from None
    return frame if rows is None else frame.head(rows)


def jobs_dir(settings: Settings) -> Path:
    """The folder holding one sub-folder per job."""
    return settings.data_dir / "jobs"


def _spawn(settings: Settings, job_id: str, folder: Path) -> None:
    env = dict(os.environ)
    # The URI may carry credentials: hand it over in the environment, never
    # in a file of the job folder.
    env["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "core.jobs", "run", str(folder)]
    try:
        with (folder / LOG_FILE).open("ab") as log:
            process = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C or a restart of the app leaves it running.
                start_new_session=True,
            )
    except OSError as exc:
        _finish(folder, "failed", error=f"cannot start the worker process: {exc}")
        raise JobError(
            f"cannot start a training process ({exc}); check that {sys.executable} "
            "can run."
        ) from exc
    (folder / PID_FILE).write_text(str(process.pid))
    with _children_lock:
        _children[job_id] = process


def _load(folder: Path) -> Job:
    try:
        status = json.loads((folder / STATUS_FILE).read_text())
        request = json.loads((folder / REQUEST_FILE).read_text())
    except FileNotFoundError:
        raise JobError(
            f"job {folder.name} has no status file; it was never started."
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise JobError(f"job {folder.name} cannot be read: {exc}") from exc
    pid = status.get("pid")
    if pid is None and (folder / PID_FILE).exists():
        pid = int((folder / PID_FILE).read_text().strip() or 0) or None
    return Job(
        job_id=folder.name,
        path=folder,
        kind=status.get("kind", "train"),
        state=status["state"],
        progress=float(status.get("progress", 0.0)),
        message=status.get("message", ""),
        request=request,
        created_at=status.get("created_at", ""),
        updated_at=status.get("updated_at", ""),
        actor=status.get("actor", ""),
        pid=pid,
        result=status.get("result"),
        error=status.get("error"),
    )


def _finish(
    folder: Path, state: JobState, message: str = "", error: str | None = None
) -> Job:
    """Record a final state on behalf of a worker that can no longer do so."""
    _update_status(
        folder,
        state=state,
        message=message or (error or state).split(";")[0].capitalize(),
        error=error,
    )
    return _load(folder)


def _update_status(folder: Path, **changes: Any) -> None:
    path = folder / STATUS_FILE
    status = json.loads(path.read_text())
    status.update(changes, updated_at=_now())
    _write_json(path, status)


def _is_alive(job: Job) -> bool:
    """Whether the job's worker process still runs (and is really that worker)."""
    with _children_lock:
        process = _children.get(job.job_id)
    if process is not None:
        return process.poll() is None
    if job.pid is None:
        # Queued by another app process that has not recorded the pid yet.
        return _age_seconds(job.created_at) < 30
    proc = Path("/proc") / str(job.pid)
    if Path("/proc/self").exists():
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            return False
        # The pid may have been reused by an unrelated process after a reboot.
        return state != "Z" and job.job_id in cmdline
    try:
        os.kill(job.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_code(job_id: str) -> int | None:
    with _children_lock:
        process = _children.get(job_id)
    return process.poll() if process is not None else None


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _save_upload(folder: Path, upload: Upload) -> Path:
    suffix = _upload_suffix(upload.name)
    target = folder / "data" / f"{_safe_stem(upload.name)}{suffix}"
    target.parent.mkdir()
    target.write_bytes(upload.data)
    return target


def _upload_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise DataError(
            f"{name}: unsupported file type {suffix or '(none)'!r}; "
            "upload a .csv or .parquet file."
        )
    return suffix


def _safe_stem(name: str) -> str:
    """The upload's name without folders or odd characters (it names the dataset)."""
    return _UNSAFE_NAME.sub("_", Path(name).stem).strip("._") or "upload"


def _job_folder(settings: Settings, job_id: str) -> Path:
    if not _JOB_ID.match(job_id):
        raise JobError(
            f"{job_id!r} is not a job id; ids look like 20250101-120000-ab12cd."
        )
    folder = jobs_dir(settings) / job_id
    if not folder.is_dir():
        raise JobError(f"no job {job_id} under {jobs_dir(settings)}.")
    return folder


def _new_job_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _age_seconds(stamp: str) -> float:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()
    except ValueError:
        return float("inf")


def _write_json(path: Path, content: Mapping[str, Any]) -> None:
    """Write atomically: readers never see half a file."""
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(content, indent=2, default=str))
    os.replace(partial, path)


def _describe(request: TrainRequest) -> str:
    return f"{request.estimator} on {Path(request.dataset).name}"


def _request_dict(request: TrainRequest) -> dict[str, Any]:
    fields = dataclasses.asdict(request)
    fields["params"] = dict(request.params)
    return fields


def _settings_dict(settings: Settings) -> dict[str, Any]:
    fields = {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if f.name != "tracking_uri"
    }
    return json.loads(json.dumps(fields, default=str))


def _settings_from(fields: Mapping[str, Any], tracking_uri: str) -> Settings:
    values = dict(fields)
    for f in dataclasses.fields(Settings):
        if f.name in values and "Path" in str(f.type) and values[f.name] is not None:
            values[f.name] = Path(values[f.name])
    values["threshold_overrides"] = tuple(
        (str(name), float(value))
        for name, value in values.get("threshold_overrides", ())
    )
    return Settings(tracking_uri=tracking_uri, **values)


class _Cancelled(BaseException):
    """Raised in the worker by SIGTERM; a BaseException so that no `except
    Exception` on the way (ours or MLflow's) swallows it, and MLflow's run
    context still marks the run as failed on the way out."""


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise _Cancelled


def _run_worker(folder: Path) -> int:
    """The worker's body: train, recording each step in the job's status."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    quiet_mlflow_warnings()
    settings = _settings_from(
        json.loads((folder / SETTINGS_FILE).read_text()),
        os.environ.get("MLFLOW_TRACKING_URI", ""),
    )
    request = TrainRequest(**json.loads((folder / REQUEST_FILE).read_text()))
    _update_status(folder, state="running", pid=os.getpid(), message="Training")

    def report(step: Progress) -> None:
        logger.info("[%3.0f%%] %s", step.fraction * 100, step.message)
        _update_status(folder, progress=step.fraction, message=step.message)

    try:
        result = train(settings, request, progress=report)
    except _Cancelled:
        logger.warning("Cancelled by request")
        _update_status(folder, state="cancelled", message="Cancelled")
        return 130
    except StudioError as exc:
        # An expected refusal (bad data, a rule not met): its message says what to
        # fix, and the job log is shown in the app, so no traceback.
        logger.error("Training failed: %s", exc)
        _update_status(folder, state="failed", message="Failed", error=str(exc))
        return 1
    except Exception as exc:
        logger.exception("Training failed unexpectedly")
        _update_status(
            folder,
            state="failed",
            message="Failed",
            error=f"unexpected {type(exc).__name__}: {exc}; the job log has the "
            "details.",
        )
        return 1
    _update_status(
        folder,
        state="succeeded",
        progress=1.0,
        message=f"Registered {result.model_name} version {result.model_version}",
        result=result.as_dict(),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of a worker process: ``python -m core.jobs run <job folder>``."""
    parser = argparse.ArgumentParser(prog="python -m core.jobs")
    parser.add_argument("command", choices=["run"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    folder = args.folder.resolve()
    try:
        return _run_worker(folder)
    except Exception:  # before or around training: still leave a readable state
        logger.exception("The job worker failed")
        _update_status(
            folder,
            state="failed",
            message="Failed",
            error="the training process failed before training started; the job "
            "log has the details.",
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
