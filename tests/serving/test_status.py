"""The state the server's processes share, and how it reads as readiness."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.status import StatusBoard, readiness

RESOLVED = {"state": "resolved", "version": "3"}


def test_board_round_trips_documents(tmp_path: Path) -> None:
    board = StatusBoard(tmp_path)
    board.publish_target(RESOLVED)
    board.publish_model({"state": "ready"})

    assert board.read_target() == RESOLVED
    assert board.read_model() == {"state": "ready"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "target.json"]


def test_board_reads_none_before_anything_is_published(tmp_path: Path) -> None:
    board = StatusBoard(tmp_path)

    assert (board.read_target(), board.read_model()) == (None, None)


@pytest.mark.parametrize(
    ("target", "model", "expected"),
    [
        (None, None, ("loading", "resolving the alias in the model registry")),
        ({"state": "error", "detail": "no alias"}, None, ("error", "no alias")),
        (
            RESOLVED,
            None,
            ("loading", "waiting for the inference worker to load version 3"),
        ),
        (
            RESOLVED,
            {"state": "loading", "detail": "loading 3"},
            ("loading", "loading 3"),
        ),
        (RESOLVED, {"state": "error", "detail": "gone"}, ("error", "gone")),
        (RESOLVED, {"state": "ready", "served": {"model_version": "3"}}, ("ok", None)),
        (
            {"state": "resolved", "version": "4"},
            {"state": "error", "detail": "gone", "served": {"model_version": "3"}},
            ("ok", None),
        ),
    ],
)
def test_readiness_follows_resolution_then_loading(
    target: dict | None, model: dict | None, expected: tuple[str, str | None]
) -> None:
    assert readiness(target, model) == expected
