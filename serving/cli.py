"""``python -m serving``: resolve the alias, start LitServe, stop on SIGTERM."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
from collections.abc import Sequence
from types import FrameType

from serving.logs import configure_logging
from serving.settings import ServerSettings, parse_settings
from serving.status import StatusBoard

logger = logging.getLogger(__name__)

def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM or Ctrl+C; return the exit status.

    Exit status: 0 after SIGTERM or Ctrl+C, 2 for invalid settings, 3 when the
    port cannot be bound (uvicorn's start-up failure), 1 for anything else.
    """
    settings = parse_settings(argv, os.environ)
    configure_logging(settings.log_level)
    board = StatusBoard.create()
    try:
        return _serve(settings, board)
    finally:
        _stop_children()
        shutil.rmtree(board.directory, ignore_errors=True)


def _serve(settings: ServerSettings, board: StatusBoard) -> int:
    _stop_on_sigterm()
    try:
        # Imported here so that --help and bad settings answer at once, without
        # the seconds it takes to import MLflow and LitServe.
        from serving.registry import Resolver
        from serving.server import build_server

        resolver = Resolver(settings, board)
        if resolver.resolve_once() is None:
            # Serve 503 with the reason instead of exiting: a supervisor would
            # restart us into the same failure, and the alias may appear later.
            resolver.retry_in_background()
        server = build_server(settings, board)
        server.run(
            host=settings.host,
            port=settings.port,
            num_api_servers=1,
            log_level=settings.log_level,
            generate_client_file=False,
        )
    except KeyboardInterrupt:
        # LitServe shuts down gracefully on KeyboardInterrupt once serving; this
        # catches a signal that arrived while it was still starting its workers.
        logger.info("stopped while starting")
    return 0


def _stop_on_sigterm() -> None:
    # Python leaves SIGTERM at its default, which kills only the main process
    # and orphans LitServe's HTTP process and worker (they keep answering), and
    # which PID 1 in a container ignores altogether. Turning SIGTERM into the
    # KeyboardInterrupt that LitServe's run() handles gives both a graceful
    # shutdown of every process.
    main_pid = os.getpid()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != main_pid:
            # A forked helper (LitServe's manager) inherited this handler: give
            # it the default action, as if the handler had never been installed.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        logger.info("SIGTERM received; shutting down")
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)


def _stop_children() -> None:
    # Normally LitServe has already stopped its processes; this catches those
    # left when it was interrupted before its own shutdown code could run.
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join(timeout=5)
