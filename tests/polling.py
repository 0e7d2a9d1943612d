"""Polling with a deadline, shared by the suites that wait on real processes."""

from __future__ import annotations

import time

import pytest


def wait_for(predicate, timeout: float, what: str, poll: float = 1.0):
    """Poll until predicate() is truthy and return its value; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
    return result
