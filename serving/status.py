"""State shared by the server's processes through small JSON files.

LitServe runs three kinds of process: the main one (which resolves the alias),
a forked HTTP process (which answers /health) and a spawned inference worker
(which loads the model). Nothing set in one is visible in another, so each
writer publishes its state as a JSON file in a private directory and the others
read it. Files survive any start method, need no extra manager process, and a
person can ``cat`` them while debugging. Writes go through a temporary file and
``os.replace`` so a reader never sees half a document.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

TARGET_FILE = "target.json"
MODEL_FILE = "model.json"


class StatusBoard:
    """Publishes and reads the target (what to load) and the model state.

    The main process writes the target, the inference worker writes the model
    state, and the HTTP process reads both.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def create(cls) -> StatusBoard:
        """Make a fresh private directory for one server run."""
        return cls(Path(tempfile.mkdtemp(prefix="studio-serving-")))

    @property
    def download_dir(self) -> Path:
        """Where the worker downloads model artifacts; removed with the board."""
        return self.directory / "models"

    def publish_target(self, target: dict[str, Any]) -> None:
        """Record what the worker should load, or why there is nothing yet."""
        self._write(TARGET_FILE, target)

    def read_target(self) -> dict[str, Any] | None:
        """The last published target, or None before the first one."""
        return self._read(TARGET_FILE)

    def publish_model(self, state: dict[str, Any]) -> None:
        """Record the worker's model state.

        The served model's facts go under "served"; the last load attempt is
        "state" (loading, ready or error) with its "detail".
        """
        self._write(MODEL_FILE, state)

    def read_model(self) -> dict[str, Any] | None:
        """The worker's last published model state, or None before the first."""
        return self._read(MODEL_FILE)

    def _write(self, name: str, document: dict[str, Any]) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle)
            os.replace(temporary, self.directory / name)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            text = (self.directory / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        document: dict[str, Any] = json.loads(text)
        return document


def readiness(
    target: dict[str, Any] | None, model: dict[str, Any] | None
) -> tuple[str, str | None]:
    """Summarize the two documents as ``(status, detail)``.

    `status` is "ok" while a model is served (even if loading a newer version is
    under way or failed), "error" when resolution or loading failed (the detail
    says why; both are retried), and "loading" otherwise.
    """
    if model is not None and model.get("served"):
        return "ok", None
    if target is None or target.get("state") == "resolving":
        return "loading", "resolving the alias in the model registry"
    if target.get("state") == "error":
        return "error", str(target.get("detail"))
    if model is None:
        return "loading", (
            f"waiting for the inference worker to load version {target.get('version')}"
        )
    status = "error" if model.get("state") == "error" else "loading"
    return status, str(model.get("detail"))
