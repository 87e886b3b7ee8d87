"""Background training jobs: real worker processes, state on disk, cancel by pid."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from core import jobs, registry
from core.config import Settings
from core.errors import DataError, JobError
from core.training import TrainRequest

JOB_SECONDS = 300
SINGLE_CLASS_CSV = b"x,y\n" + b"".join(f"{i},yes\n".encode() for i in range(20))


@pytest.fixture
def job_settings(settings: Settings) -> Iterator[Settings]:
    """A fresh store; any job a test leaves running is cancelled afterwards."""
    yield settings
    for job in jobs.list_jobs(settings):
        if job.is_active:
            jobs.cancel(settings, job.job_id)


def wait_for_state(settings: Settings, job_id: str, state: str) -> jobs.Job:
    deadline = time.monotonic() + JOB_SECONDS
    while time.monotonic() < deadline:
        job = jobs.read_job(settings, job_id)
        if job.state == state or not job.is_active:
            return job
        time.sleep(0.1)
    pytest.fail(f"job {job_id} never became {state}")


def test_a_training_job_registers_a_version(job_settings: Settings) -> None:
    started = jobs.start_training(job_settings, TrainRequest("breast_cancer"))
    assert started.state == "queued"

    job = jobs.wait(job_settings, started.job_id, timeout=JOB_SECONDS)

    assert (job.state, job.version, job.progress) == ("succeeded", "1", 1.0)
    assert registry.get_version(job_settings, "1").run_id == job.result["run_id"]
    assert any(
        "[100%] Registered" in line for line in jobs.read_log(job_settings, job.job_id)
    )


def test_a_job_outlives_the_process_that_started_it(job_settings: Settings) -> None:
    started = jobs.start_training(job_settings, TrainRequest("iris"))
    # What an app restart leaves behind: the job folder, not our Popen handle.
    jobs._children.pop(started.job_id)

    job = jobs.wait(job_settings, started.job_id, timeout=JOB_SECONDS)

    assert job.state == "succeeded"
    assert [j.job_id for j in jobs.list_jobs(job_settings)] == [started.job_id]


def test_bad_data_fails_the_job_with_a_message(job_settings: Settings) -> None:
    upload = jobs.Upload("one class.csv", SINGLE_CLASS_CSV)
    started = jobs.start_training(
        job_settings, TrainRequest("ignored", target="y"), upload
    )

    job = jobs.wait(job_settings, started.job_id, timeout=JOB_SECONDS)

    assert job.state == "failed"
    assert job.error == (
        "one_class: target 'y' has a single class ('yes'); a classifier needs at "
        "least two."
    )
    # The log is shown in the app: a data error reads as a message, not a trace.
    log = jobs.read_log(job_settings, job.job_id)
    assert not any("Traceback" in line for line in log)
    assert any("has a single class" in line for line in log)


def test_an_upload_is_kept_in_the_job_folder(job_settings: Settings) -> None:
    upload = jobs.Upload("../../evil name.csv", SINGLE_CLASS_CSV)

    job = jobs.start_training(job_settings, TrainRequest("x", target="y"), upload)

    saved = job.path / "data" / "evil_name.csv"
    assert saved.read_bytes() == SINGLE_CLASS_CSV
    assert job.request["dataset"] == str(saved)


def test_cancel_stops_a_running_job(job_settings: Settings) -> None:
    slow = TrainRequest(
        "breast_cancer",
        "gradient_boosting",
        params={"max_iter": 10_000, "learning_rate": 0.0001},
    )
    started = jobs.start_training(job_settings, slow)
    assert wait_for_state(job_settings, started.job_id, "running").state == "running"

    job = jobs.cancel(job_settings, started.job_id)

    assert (job.state, job.message) == ("cancelled", "Cancelled")
    assert job.pid is not None and not os.path.exists(f"/proc/{job.pid}/cmdline")


def test_a_worker_that_dies_reads_as_failed(job_settings: Settings) -> None:
    started = jobs.start_training(job_settings, TrainRequest("breast_cancer"))
    assert started.pid is not None
    os.kill(started.pid, signal.SIGKILL)

    job = wait_for_state(job_settings, started.job_id, "failed")

    assert job.state == "failed"
    assert job.error == (
        "the training process ended without reporting a result (exit code -9); "
        "see the job log, then start the job again."
    )


def test_unsupported_uploads_are_refused(job_settings: Settings) -> None:
    with pytest.raises(DataError, match=r"^notes\.txt: unsupported file type '\.txt'"):
        jobs.start_training(
            job_settings, TrainRequest("x"), jobs.Upload("notes.txt", b"hi")
        )
    assert jobs.list_jobs(job_settings) == []


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("../etc", "'../etc' is not a job id; ids look like 20250101-120000-ab12cd."),
        ("20250101-120000-abcdef", "no job 20250101-120000-abcdef under "),
    ],
)
def test_unknown_jobs_are_refused(
    job_settings: Settings, job_id: str, message: str
) -> None:
    with pytest.raises(JobError) as caught:
        jobs.read_job(job_settings, job_id)

    assert str(caught.value).startswith(message)


def test_preview_reads_the_first_rows_of_an_upload() -> None:
    frame = jobs.preview_upload(jobs.Upload("data.csv", SINGLE_CLASS_CSV), rows=5)

    assert list(frame.columns) == ["x", "y"]
    assert len(frame) == 5
