"""Detached processes we start and later find again by pid, safely.

A server outlives the CLI call or app session that started it, so all we keep
is its pid plus a start-time token. Before signalling a pid we check the token:
a pid the kernel has since given to another program is never touched. Each
server leads its own session and process group: stopping asks the leader first,
so it can stop its own workers in order, then ends whatever of the group is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.deployment.base import tail

logger = logging.getLogger(__name__)

STOP_GRACE_S = 15.0
LEFTOVER_GRACE_S = 5.0
KILL_GRACE_S = 5.0
POLL_S = 0.1

# Children spawned by this process, so status checks can reap them: an exited
# child stays a zombie (and looks alive to kill(pid, 0)) until waited for.
_children: dict[int, subprocess.Popen[bytes]] = {}

_HAS_PROC = Path("/proc/self/stat").exists()
_EXITED = ("Z", "X")  # exited, waiting to be reaped


@dataclass(frozen=True)
class Spawned:
    """A started process: its pid (= process group id) and identity token."""

    pid: int
    token: str
    cmdline: str


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
) -> Spawned:
    """Start `argv` in a new session with stdout and stderr going to `log_path`.

    The previous log, if any, is kept as ``<log>.1`` for one launch.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path.exists():
        os.replace(log_path, log_path.with_name(log_path.name + ".1"))
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _children[child.pid] = child
    token = start_token(child.pid) or ""
    return Spawned(child.pid, token, " ".join(argv))


def start_token(pid: int) -> str | None:
    """An identity for the process `pid` that changes when the pid is reused.

    Linux: the start time in clock ticks since boot from ``/proc``. Elsewhere:
    the start time printed by ``ps``. None when no such process is running.
    """
    if _HAS_PROC:
        fields = _proc_stat(Path(f"/proc/{pid}/stat"))
        if fields is None or fields[0] in _EXITED:
            return None
        return fields[19]
    result = subprocess.run(
        ["ps", "-o", "stat=,lstart=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    words = result.stdout.split()
    if result.returncode != 0 or not words or words[0].startswith("Z"):
        return None
    return " ".join(words[1:])


def is_ours(pid: int, token: str) -> bool:
    """True when `pid` runs and is the very process we recorded."""
    _reap_children()
    current = start_token(pid)
    return current is not None and current == token


def group_exists(pgid: int) -> bool:
    """True while any process of the group `pgid` runs (zombies do not count)."""
    _reap_children()
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg still finds an exited leader until its parent reaps it, and that
    # parent may be another program (the app that launched the server while
    # the CLI stops it): ask /proc whether any member still runs.
    return _has_running_member(pgid) if _HAS_PROC else True


def _has_running_member(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _proc_stat(stat)
        # After the command name: state, ppid, pgrp, ...
        if fields is not None and fields[2] == str(pgid) and fields[0] not in _EXITED:
            return True
    return False


def _proc_stat(path: Path) -> list[str] | None:
    """The fields of a /proc/<pid>/stat after the command name, or None if gone."""
    try:
        text = path.read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after it do not.
    return text[text.rindex(")") + 2 :].split()


def owns_group(pid: int, token: str) -> bool:
    """True when the group led by `pid` is ours and still has members.

    Either the leader is alive and ours, or it is gone while members of its
    group remain. In the second case the pid cannot have been reused: the
    kernel never hands out a pid that is still in use as a process group id.
    """
    if is_ours(pid, token):
        return True
    return start_token(pid) is None and group_exists(pid)


def stop_group(pid: int, token: str, grace: float = STOP_GRACE_S) -> bool:
    """SIGTERM the leader `pid`, then the rest of its group, then SIGKILL.

    The leader gets the first SIGTERM alone and up to `grace` seconds to exit.
    A SIGTERM to the whole group at once would race the leader's own shutdown:
    LitServe's main process stops its HTTP process, its worker and last its
    multiprocessing manager, and a manager killed first makes that shutdown
    fail with EOFError. What is left once the leader is gone (or after `grace`)
    gets SIGTERM and the rest of `grace`, at least `LEFTOVER_GRACE_S` seconds,
    then SIGKILL.

    Returns:
        True when something of ours was stopped, False when nothing was left
        (or the pid now belongs to another program, which is left alone).
    """
    if not owns_group(pid, token):
        return False
    deadline = time.monotonic() + grace
    if is_ours(pid, token):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_for(lambda: not is_ours(pid, token), grace):
            logger.warning(
                "Process %d did not exit within %g s of SIGTERM; signalling its group",
                pid,
                grace,
            )
    if not group_exists(pid):
        return True
    # Members the leader left behind, or the whole group if it would not exit.
    _signal_group(pid, signal.SIGTERM)
    leftover = max(deadline - time.monotonic(), LEFTOVER_GRACE_S)
    if _wait_gone(pid, leftover):
        return True
    logger.warning(
        "Process group %d did not stop within %.3g s of SIGTERM; killing it",
        pid,
        leftover,
    )
    _signal_group(pid, signal.SIGKILL)
    if not _wait_gone(pid, KILL_GRACE_S):
        logger.warning("Process group %d still exists after SIGKILL", pid)
    return True


def read_log_tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a log file ('' when there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            # Logs can grow large; the tail is in the last few hundred KiB.
            handle.seek(max(0, size - 512 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return tail(text, lines)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _wait_gone(pgid: int, seconds: float) -> bool:
    return _wait_for(lambda: not group_exists(pgid), seconds)


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_S)
    return condition()


def _reap_children() -> None:
    # Every exited child of ours, not only the one asked about: a long-lived
    # caller (the app) would otherwise keep a zombie per server it launched.
    for child_pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[child_pid]
