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


def finished_job(client, job_id: str, timeout: float) -> dict:
    """A reference service's job (GET /api/v1/jobs/<id>, services/freshpoc) once it no longer runs."""
    def ended():
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["status"] != "running" else None
    return wait_for(ended, timeout, f"job {job_id} to finish", poll=0.05)
