"""Stopping a process group we started: the leader first, then what is left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.deployment import ProcessBackend, processes
from tests.core.conftest import Store

# A member of the leader's group that writes down each SIGTERM it gets.
MEMBER = """
import signal, sys, time
def note(*_):
    with open(sys.argv[1], "a") as record:
        record.write("SIGTERM\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, note)
open(sys.argv[1], "a").write("ready\\n")
while True:
    time.sleep(0.1)
"""

# Leaders: each starts MEMBER in its own group, then reacts to SIGTERM its way.
STOPS_ITS_MEMBER = """
import signal, subprocess, sys, time
member = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
def stop(*_):
    time.sleep(0.5)  # time for a SIGTERM sent to the whole group to arrive
    member.kill()
    member.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    time.sleep(0.1)
"""
LEAVES_ITS_MEMBER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
while True:
    time.sleep(0.1)
"""
IGNORES_SIGTERM = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
while True:
    time.sleep(0.1)
"""


def start_leader(tmp_path: Path, leader: str) -> tuple[processes.Spawned, Path]:
    """Spawn `leader` with its member; return it once the member is ready."""
    record = tmp_path / "member.txt"
    spawned = processes.spawn(
        [sys.executable, "-c", leader, MEMBER, str(record)],
        env=os.environ,
        cwd=tmp_path,
        log_path=tmp_path / "leader.log",
    )
    deadline = time.monotonic() + 30
    while not record.exists() or "ready" not in record.read_text():
        assert time.monotonic() < deadline, (tmp_path / "leader.log").read_text()
        time.sleep(0.05)
    return spawned, record


def test_the_leader_alone_gets_the_first_sigterm(tmp_path: Path) -> None:
    spawned, record = start_leader(tmp_path, STOPS_ITS_MEMBER)

    assert processes.stop_group(spawned.pid, spawned.token)

    assert not processes.group_exists(spawned.pid)
    assert record.read_text() == "ready\n"  # stopped by its leader, not by us


def test_members_the_leader_leaves_behind_get_sigterm(tmp_path: Path) -> None:
    spawned, record = start_leader(tmp_path, LEAVES_ITS_MEMBER)
    started = time.monotonic()

    assert processes.stop_group(spawned.pid, spawned.token)

    assert not processes.group_exists(spawned.pid)
    assert record.read_text() == "ready\nSIGTERM\n"
    assert time.monotonic() - started < processes.STOP_GRACE_S


def test_a_group_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "LEFTOVER_GRACE_S", 0.5)
    spawned, record = start_leader(tmp_path, IGNORES_SIGTERM)

    assert processes.stop_group(spawned.pid, spawned.token, grace=0.5)

    assert not processes.group_exists(spawned.pid)
    assert record.read_text() == "ready\nSIGTERM\n"  # then SIGKILL for the leader


def test_a_pid_with_another_token_is_left_alone(tmp_path: Path) -> None:
    spawned, _ = start_leader(tmp_path, LEAVES_ITS_MEMBER)
    try:
        assert not processes.stop_group(spawned.pid, "not-its-start-time")

        assert processes.is_ours(spawned.pid, spawned.token)
    finally:
        processes.stop_group(spawned.pid, spawned.token)


@pytest.mark.serving
def test_a_stopped_model_server_shuts_down_cleanly(store: Store) -> None:
    backend = ProcessBackend(store.settings)
    backend.launch("staging")

    stopped = backend.stop("staging")

    log = backend.logs("staging", lines=200)
    assert stopped.state == "stopped"
    assert "Traceback" not in log
    assert log.rstrip().endswith("serving.cli: server stopped"), log


def test_a_group_whose_leader_is_an_unreaped_zombie_is_gone() -> None:
    # Started outside processes.spawn, so nothing here reaps it: like a server
    # the app launched and the CLI stops, its exit leaves a zombie behind.
    leader = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while processes.start_token(leader.pid) is not None:
            assert time.monotonic() < deadline, "the leader did not exit"
            time.sleep(0.05)
        os.killpg(leader.pid, 0)  # the kernel still counts the zombie

        assert not processes.group_exists(leader.pid)
    finally:
        leader.wait()
