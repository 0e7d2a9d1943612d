"""A test-managed native stack on free ports, started once per session and torn down after."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from stackctl.model import settings
from stackctl.native import postgres
from stackctl.native.airflow_api import AirflowApi
from stackctl.native.stack import NativeStack
from tests.ports import free_ports  # noqa: F401 (re-exported: the suites take their ports here)
from workers import storage

# The REST client's timeout in the tests: a stack just started on a machine busy with the other suites
# took over the client's default 30 s for its first token (the api-server sets its auth manager up then).
API_TIMEOUT_S = 120
STACKCTL_ENV = {**os.environ, "PYTHONPATH": f"{settings.REPO}:{settings.REPO / 'airflow'}"}
# One test stack starts at a time on this machine (see start_slot); a start waits this long at most.
START_SLOT = Path(tempfile.gettempdir()) / "controlplane-test-stack-start.lock"
START_SLOT_WAIT_S = 600


def pytest_collection_modifyitems(items):
    """Tests marked after_workloads (monitoring) run last: they check the series the others produce."""
    items.sort(key=lambda item: item.get_closest_marker("after_workloads") is not None)


def wait_for(predicate, timeout: float, what: str):
    """Poll until predicate() is truthy and return its value; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(2)
    return result


def platform_db(stack: NativeStack):
    """A connection to the stack's platform database, as the platform role."""
    return postgres.connect(stack, stack.read_secret("platform_db_password"), user="platform", dbname="platform")


def storage_base(stack: NativeStack):
    """The root of the stack's platform data and model artifacts (the platform_storage_uri variable)."""
    return storage.root(json.loads((stack.airflow_home / "variables.json").read_text())["platform_storage_uri"])


def training_row(stack: NativeStack, run_id: str, tenant: str):
    """(status, stage, model_version, failure_reason) of a tenant's training in a DAG run."""
    conn = platform_db(stack)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT status, stage, model_version, failure_reason FROM model_training_runs"
                " WHERE dag_run_id = %s AND tenant_id = %s", (run_id, tenant),
            )
            return cur.fetchone()
    finally:
        conn.close()


def stack_home() -> Path:
    """A fresh state folder the unprivileged PostgreSQL user can reach (mkdtemp makes 0700)."""
    home = Path(tempfile.mkdtemp(prefix="cp-e2e-"))
    home.chmod(0o755)
    return home


def stackctl(home: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stackctl", "--home", str(home), *args],
        env=STACKCTL_ENV, capture_output=True, text=True, timeout=timeout,
    )


@contextlib.contextmanager
def start_slot(wait_s: float = START_SLOT_WAIT_S):
    """Hold the machine's one slot for starting a test stack: an flock on the yielded file, held as long
    as a process has it open (pass it to a `stackctl up` child, and the slot ends with that start).

    A start launches some 25 Airflow processes at once. With the suites side by side, several starts at
    once (each suite's stack, the backup test's second one) beside the cluster's deploy drove the load
    past 25 on 2 cores, and every latency-bound step (ansible's many short ones, task pickup) ran three
    to four times slower. One at a time, a start takes about 80 s.
    """
    with open(START_SLOT, "a") as slot:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:  # a start that hangs holds it: go on without it
                    break
                time.sleep(1)
        yield slot


def port_args(ports: dict[str, int]) -> list[str]:
    return [arg for name, port in ports.items() for arg in ("--port", f"{name}={port}")]


@dataclass
class RunningStack:
    home: Path
    stack: NativeStack
    api: AirflowApi

    def stackctl(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return stackctl(self.home, *args, timeout=timeout)


@pytest.fixture(scope="session")
def running_stack():
    home = stack_home()
    names = list(settings.load_source()["ports"])
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    # Fault injection on: the fault tests slow and fail the FreshPoC services on purpose. TLS on: the
    # DAGs run over it, and the heavy pool ansible deploys (test_ansible.py) joins it, as ansible's hosts
    # always use TLS.
    with start_slot():
        started = stackctl(home, "up", "--fault-injection", "--tls", *port_args(ports))
    if started.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"stackctl up failed:\n{started.stdout}\n{started.stderr}")
    api = None
    try:  # from here on the stack runs: stop it whatever fails, its first API call included
        stack = NativeStack.load(home)
        api = AirflowApi(stack.url("api"), stack.source["admin_user"], stack.read_secret("admin_password"),
                         timeout=API_TIMEOUT_S, verify=stack.verify)
        yield RunningStack(home, stack, api)
    finally:
        if api is not None:
            api.close()
        stackctl(home, "down", timeout=180)
        shutil.rmtree(home, ignore_errors=True)
