"""A timed-out command leaves nothing behind: the processes it started die with it."""

from __future__ import annotations

import time

import psutil
import pytest

from tests import bounded


def test_a_timeout_kills_what_the_command_started_too(tmp_path):
    pidfile = tmp_path / "pid"
    with pytest.raises(bounded.subprocess.TimeoutExpired):  # TimedOut is one
        bounded.run(["sh", "-c", f"sleep 60 >/dev/null 2>&1 & echo $! > {pidfile}; wait"], timeout=1)
    worker = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(worker):
        assert time.monotonic() < deadline, "the command's own child outlived its timeout"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_timeout_says_where_the_command_was():
    with pytest.raises(bounded.TimedOut, match=r"(?s)timed out after 1 seconds.*TASK \[the slow one\].*warned"):
        bounded.run(["sh", "-c", "echo 'TASK [the slow one]'; echo warned >&2; sleep 60"], timeout=1)


def test_a_command_within_its_time_returns_its_outcome():
    done = bounded.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
