"""Log set-up for the server's entry points (the main process and the worker)."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Send this package's records to stderr at `level` (debug, info, ...)."""
    logging.basicConfig(format=FORMAT, level=logging.WARNING)
    logging.getLogger("serving").setLevel(level.upper())
