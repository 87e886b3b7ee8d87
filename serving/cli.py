"""``python -m serving``: resolve the alias, start LitServe, stop on SIGTERM."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from serving.logs import configure_logging
from serving.settings import ServerSettings, parse_settings
from serving.status import StatusBoard

logger = logging.getLogger(__name__)

_stop_requested = threading.Event()

# What a call through a proxy of a dead multiprocessing manager raises: EOFError
# from its closed connection, ConnectionRefusedError when it must reconnect.
_MANAGER_GONE = (EOFError, ConnectionError)


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
    if _stop_requested.is_set():
        logger.info("SIGTERM received while starting; not serving")
        return 0
    threading.Thread(
        target=_shut_down_when_asked, args=(server,), name="sigterm", daemon=True
    ).start()
    try:
        server.run(
            host=settings.host,
            port=settings.port,
            num_api_servers=1,
            log_level=settings.log_level,
            generate_client_file=False,
        )
    except KeyboardInterrupt:
        # Ctrl+C while LitServe is still starting its workers (once serving,
        # run() handles it and shuts down gracefully itself).
        logger.info("interrupted while starting")
    except _MANAGER_GONE:
        # run() blocks on an event held by LitServe's manager process, so a
        # manager killed from outside (SIGKILL, a signal to the group) ends that
        # wait with EOFError; `_stop_children` stops what is left.
        if not _stop_requested.is_set():
            logger.error("LitServe's manager process died; the server cannot go on")
            return 1
        logger.warning("LitServe's manager process ended first; stopping the rest")
    logger.info("server stopped")
    return 0


def _stop_on_sigterm() -> None:
    # Python leaves SIGTERM at its default, which kills only the main process
    # and orphans LitServe's HTTP process and worker (they keep answering), and
    # which PID 1 in a container ignores altogether. The handler only raises a
    # flag: an exception raised from it could land anywhere in LitServe's
    # start-up (inside a logging lock, a manager call) and leave the process
    # hung half-started. `_shut_down_when_asked` acts on the flag instead.
    main_pid = os.getpid()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if os.getpid() == main_pid:
            _stop_requested.set()
        elif not (_is_manager() and os.getppid() == main_pid):
            # Another forked helper (LitServe's HTTP process before uvicorn
            # takes over its signals) or an orphaned manager inherited this
            # handler: give it the default action, as if it were not installed.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        # Else LitServe's manager, while the main process lives, ignores a
        # SIGTERM sent to the whole group, as CPython's managers ignore SIGINT
        # (bpo-36368): the main process still needs it to shut down and stops
        # it last, with manager.shutdown().

    signal.signal(signal.SIGTERM, on_sigterm)


def _is_manager() -> bool:
    # multiprocessing names a manager's server process after its class and
    # LitServe starts a SyncManager (mp.Manager()); its HTTP process is
    # "LitServer-<n>".
    return multiprocessing.current_process().name.startswith("SyncManager-")


def _shut_down_when_asked(server: Any) -> None:
    """Turn a SIGTERM into LitServe's own graceful shutdown of every process."""
    _stop_requested.wait()
    logger.info("SIGTERM received; shutting down")
    # run() creates the shutdown event with its process manager, then blocks on
    # it; setting it (early or late) makes run() stop the HTTP process and the
    # worker. Its own /shutdown route does the same, but needs HTTP to be up.
    while (event := getattr(server, "_shutdown_event", None)) is None:
        time.sleep(0.05)
    try:
        event.set()
    except _MANAGER_GONE:
        # The event lives in LitServe's manager process; if that is gone,
        # run() has already failed its wait on it and `_serve` handles that.
        logger.debug("LitServe's manager process is gone; its run() stops alone")


def _stop_children() -> None:
    # Normally LitServe has already stopped its processes; this catches those
    # left when it was interrupted before its own shutdown code could run.
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join(timeout=5)
