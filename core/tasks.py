"""Operations that run outside the caller's thread, with their progress lines.

The app starts launches, smoke tests and gate runs here so the page keeps
drawing: Streamlit commands fail outside the script thread, so a worker only
touches its `Task`, and pages draw tasks by polling. Training does not use this:
it runs in a separate process (`core.jobs`) so it survives the app restarting.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from core.errors import StudioError

logger = logging.getLogger(__name__)


@dataclass
class Task:
    """An operation running outside the script thread, with its progress lines.

    The worker thread only touches this object; it never calls Streamlit (which
    would fail without a ScriptRunContext). Pages draw it by polling.
    """

    key: str
    title: str
    actor: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    state: Literal["running", "complete", "error"] = "running"
    lines: list[str] = field(default_factory=list)
    summary: str = ""
    error: str = ""
    finished_at: datetime | None = None

    @property
    def running(self) -> bool:
        """True until the work returned or raised."""
        return self.state == "running"

    def log(self, line: str) -> None:
        """Progress callback handed to `core` (called from the worker thread)."""
        self.lines.append(str(line))


class TaskBoard:
    """The tasks of this app process, one slot per key (e.g. per stage).

    A key holds at most one running task, so two people cannot launch the same
    stage's server at once; everyone sees what is running there.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Task | None:
        """The running or last finished task of `key`."""
        with self._lock:
            return self._tasks.get(key)

    def start(
        self,
        key: str,
        title: str,
        who: str,
        work: Callable[[Callable[[str], None]], Any],
        summarize: Callable[[Any], str] = lambda _r: "",
    ) -> Task:
        """Run `work(progress)` in a thread under `key`.

        Raises:
            StudioError: a task already runs under `key`.
        """
        with self._lock:
            current = self._tasks.get(key)
            if current is not None and current.running:
                raise StudioError(
                    f"{current.title} is still running (started by {current.actor} "
                    f"at {current.started_at:%H:%M:%S} UTC); wait for it to finish."
                )
            task = Task(key=key, title=title, actor=who)
            self._tasks[key] = task
        threading.Thread(
            target=self._run,
            args=(task, work, summarize),
            name=f"task-{key}",
            daemon=True,
        ).start()
        return task

    def finished(self) -> list[Task]:
        """The last task of each key that has ended."""
        with self._lock:
            return [t for t in self._tasks.values() if not t.running]

    def running(self) -> bool:
        """True while any task runs."""
        with self._lock:
            return any(t.running for t in self._tasks.values())

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until no task runs (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    @staticmethod
    def _run(
        task: Task,
        work: Callable[[Callable[[str], None]], Any],
        summarize: Callable[[Any], str],
    ) -> None:
        try:
            result = work(task.log)
            task.summary = summarize(result)
            task.state = "complete"
        except StudioError as exc:
            logger.warning("%s failed: %s", task.title, exc)
            task.error = str(exc)
            task.state = "error"
        except Exception as exc:
            logger.exception("%s failed unexpectedly", task.title)
            task.error = (
                f"unexpected {type(exc).__name__}: {exc}. The traceback is in the "
                "app's log."
            )
            task.state = "error"
        finally:
            task.finished_at = datetime.now(UTC)
