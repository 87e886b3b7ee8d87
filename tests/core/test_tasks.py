"""Background tasks: one per key, progress lines, errors kept as messages."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from core.errors import StudioError
from core.tasks import TaskBoard


def test_task_runs_in_a_thread_and_keeps_its_lines_and_summary() -> None:
    board = TaskBoard()
    main = threading.get_ident()
    seen: list[int] = []

    def work(progress: Callable[[str], None]) -> int:
        seen.append(threading.get_ident())
        progress("step one")
        progress("step two")
        return 7

    task = board.start("staging", "Launch staging", "ana", work, lambda r: f"got {r}")
    assert board.wait(10)
    assert seen and seen[0] != main
    assert task.state == "complete"
    assert task.lines == ["step one", "step two"]
    assert task.summary == "got 7"
    assert task.finished_at is not None
    assert board.get("staging") is task


def test_a_key_runs_one_task_at_a_time() -> None:
    board = TaskBoard()
    release = threading.Event()
    first = board.start("production", "Release v3", "ana", lambda _p: release.wait(10))
    with pytest.raises(StudioError, match=r"Release v3 is still running .*ana"):
        board.start("production", "Release v4", "bo", lambda _p: None)
    other = board.start("staging", "Launch staging", "bo", lambda _p: None)
    release.set()
    assert board.wait(10)
    assert first.state == other.state == "complete"
    again = board.start("production", "Release v4", "bo", lambda _p: None)
    assert board.wait(10)
    assert again.state == "complete" and board.get("production") is again


def test_errors_become_messages_not_tracebacks() -> None:
    board = TaskBoard()

    def refused(_p: Callable[[str], None]) -> None:
        raise StudioError("alias moved meanwhile; reload and try again")

    def broken(_p: Callable[[str], None]) -> None:
        raise KeyError("boom")

    expected = board.start("a", "Promote", "ana", refused)
    unexpected = board.start("b", "Smoke", "ana", broken)
    assert board.wait(10)
    assert expected.state == "error"
    assert expected.error == "alias moved meanwhile; reload and try again"
    assert unexpected.state == "error"
    assert unexpected.error.startswith("unexpected KeyError")
    assert "app's log" in unexpected.error
    assert not board.running()
