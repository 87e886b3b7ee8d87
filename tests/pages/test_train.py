"""The Train page: its widgets, real background jobs, and data errors as messages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from core import data, jobs, registry
from core.config import Settings
from core.training import TrainRequest
from tests.pages.conftest import open_app_page as open_page

pytestmark = pytest.mark.integration

JOB_SECONDS = 300
ONE_CLASS_CSV = b"x,y\n" + b"".join(f"{i},yes\n".encode() for i in range(20))
# Two classes, one of them a single row: only training itself finds that out.
RARE_CLASS_CSV = ONE_CLASS_CSV + b"20,no\n"
PRICES_CSV = b"x,price\n" + b"".join(
    f"{i},{i * 1.37:.2f}\n".encode() for i in range(40)
)


@pytest.fixture
def trainer(studio: Settings) -> Iterator[Settings]:
    """An empty store; jobs a test leaves running are cancelled afterwards."""
    yield studio
    for job in jobs.list_jobs(studio):
        if job.is_active:
            jobs.cancel(studio, job.job_id)


def upload(at: AppTest, name: str, content: bytes) -> AppTest:
    """Switch to "Upload a file" and hand the page a file."""
    at.segmented_control(key="train.source").set_value("Upload a file").run()
    at.file_uploader(key="train.upload").set_value((name, content, "text/csv"))
    return at.run()


def header_only_job(s: Settings) -> jobs.Job:
    """A job started on a CSV file with a header and no rows; it fails at once."""
    return jobs.start_training(
        s,
        TrainRequest("", target="target"),
        jobs.Upload("empty.csv", b"x,target\n"),
    )


def test_offers_builtin_data_an_estimator_and_its_parameters(trainer: Settings) -> None:
    at = open_page("train")

    assert at.selectbox(key="train.builtin").options == data.list_builtin()
    assert [n.label for n in at.number_input] == ["C", "max_iter", "Seed"]
    assert not at.button(key="train.start").disabled


def test_each_estimator_brings_its_own_parameters(trainer: Settings) -> None:
    at = open_page("train")

    at = at.selectbox(key="train.estimator").set_value("random_forest").run()

    labels = [n.label for n in at.number_input]
    assert labels == ["n_estimators", "min_samples_leaf", "Seed"]
    assert at.checkbox(key="train.param.random_forest.max_depth.on").value is False


def test_training_registers_a_version_other_pages_show(trainer: Settings) -> None:
    assert open_page("overview").button(key="overview.train")  # caches "no versions"
    at = open_page("train")

    at.button(key="train.start").click().run()
    job = jobs.wait(trainer, at.session_state["train.job"], timeout=JOB_SECONDS)
    at.run()

    assert job.state == "succeeded"
    assert at.success[0].value.endswith("Registered studio-classifier version 1.")
    assert [v.version for v in registry.list_versions(trainer)] == ["1"]
    assert open_page("overview").metric[0].value == "1"


def test_an_unreadable_upload_is_a_message(trainer: Settings) -> None:
    at = upload(open_page("train"), "empty.csv", b"")

    assert at.error[0].value == (
        "Reading empty.csv failed: empty.csv is empty; use a file with a header "
        "row and data."
    )
    assert at.button(key="train.start").disabled


def test_a_fake_parquet_file_is_named_as_uploaded(trainer: Settings) -> None:
    at = upload(open_page("train"), "fake.parquet", b"not parquet at all")

    assert "Parquet input source 'fake.parquet'" in at.error[0].value
    assert "studio-upload-" not in at.error[0].value


def test_upload_offers_its_columns_as_the_target(trainer: Settings) -> None:
    at = upload(open_page("train"), "churn.csv", RARE_CLASS_CSV)

    target = at.selectbox(key="train.target")
    assert (target.options, target.value) == (["x", "y"], "y")
    assert len(at.dataframe[0].value) == 20  # the preview


@pytest.mark.parametrize(
    ("header", "guess"),
    [("x,y,target", "target"), ("Label,y,x", "Label"), ("a,b,c", "c")],
)
def test_the_target_guess_takes_the_best_name(
    trainer: Settings, header: str, guess: str
) -> None:
    content = f"{header}\n1,0,1\n2,1,0\n".encode()

    at = upload(open_page("train"), "guess.csv", content)

    assert at.selectbox(key="train.target").value == guess


def test_a_single_class_target_cannot_start(trainer: Settings) -> None:
    at = upload(open_page("train"), "one class.csv", ONE_CLASS_CSV)

    assert at.button(key="train.start").disabled
    assert at.warning[0].value == (
        "'y' has a single value ('yes') in every row; a classifier needs at least "
        "two classes. Pick another target column."
    )


def test_a_file_without_rows_cannot_start(trainer: Settings) -> None:
    at = upload(open_page("train"), "empty.csv", b"x,y,target\n")

    assert at.button(key="train.start").disabled
    assert "no data rows" in at.button(key="train.start").help


def test_a_continuous_target_is_warned_about(trainer: Settings) -> None:
    at = upload(open_page("train"), "prices.csv", PRICES_CSV)

    assert "'price' looks continuous (40 distinct numbers)" in at.warning[0].value
    assert not at.button(key="train.start").disabled  # a warning, not a rule


def test_a_job_failing_on_its_data_shows_why(trainer: Settings) -> None:
    at = upload(open_page("train"), "rare class.csv", RARE_CLASS_CSV)

    at.button(key="train.start").click().run()
    job = jobs.wait(trainer, at.session_state["train.job"], timeout=JOB_SECONDS)
    at.run()

    assert job.state == "failed"
    assert at.error[0].value == (
        "logistic_regression on rare_class.csv failed: rare_class: class 'no' of "
        "'y' has a single row; the stratified split needs at least 2 rows per "
        "class. Remove or merge that class."
    )
    assert not at.exception


def test_the_log_of_a_data_error_has_no_traceback(trainer: Settings) -> None:
    job = jobs.wait(trainer, header_only_job(trainer).job_id, timeout=JOB_SECONDS)

    log = open_page("train").code[-1].value

    assert job.state == "failed"
    assert "Training failed: empty has no data rows" in log
    assert "Traceback" not in log


def test_the_form_keeps_its_choices_across_pages(trainer: Settings) -> None:
    at = open_page("train")
    at.selectbox(key="train.estimator").set_value("random_forest").run()
    at.number_input(key="train.param.random_forest.n_estimators").set_value(77).run()

    at = at.switch_page("pages/overview.py").run().switch_page("pages/train.py").run()

    assert at.selectbox(key="train.estimator").value == "random_forest"
    assert at.number_input(key="train.param.random_forest.n_estimators").value == 77


def test_a_running_job_is_picked_up_and_can_be_cancelled(trainer: Settings) -> None:
    slow = TrainRequest(
        "breast_cancer",
        "gradient_boosting",
        params={"max_iter": 10_000, "learning_rate": 0.0001},
    )
    started = jobs.start_training(trainer, slow)
    at = open_page("train")  # a new session, as after a reload
    assert len(at.get("progress")) == 1

    at.button(key=f"train.cancel.{started.job_id}").click().run()

    assert jobs.read_job(trainer, started.job_id).state == "cancelled"
    assert at.warning[0].value == "gradient_boosting on breast_cancer was cancelled."
