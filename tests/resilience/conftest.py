"""The resilience suite's own session stack: these tests break it on purpose, so it is not tests/e2e's.

The stack comes from tests/e2e's fixture (imported, so started once per session of this
suite); the helpers here seed tenants, find the real PIDs of supervised processes and wait
until the stack is healthy again after a fault.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from stackctl.demo import seed as demo_seed
from stackctl.demo.data import TenantSpec
from stackctl.native import lifecycle
from stackctl.native.supervisor import Supervisor
from tests.e2e.conftest import (  # noqa: F401 (running_stack: the session fixture; the rest re-exported)
    RunningStack,
    platform_db,
    running_stack,
    storage_base,
    training_row,
)
from workers.platform_db.db import transaction

HEALTHY_TIMEOUT_S = 240






def seed_tenant(stack, tenant: str, n_interactions: int, seed: int) -> None:
    """An active tenant with deterministic data in the platform DB and as Parquet in object storage."""
    spec = TenantSpec(tenant, n_users=n_interactions // 15, n_items=n_interactions // 40,
                      n_interactions=n_interactions, seed=seed)
    conn = platform_db(stack)
    try:
        demo_seed.seed(conn, storage_base(stack), int(time.time() // 3600 * 3600 * 1_000_000), (spec,))
    finally:
        conn.close()


def deactivate_tenants(stack, prefix: str) -> None:
    """Keep this suite's tenants out of every all-tenant run."""
    conn = platform_db(stack)
    try:
        with transaction(conn) as cur:
            cur.execute("UPDATE tenants SET active = false WHERE tenant_id LIKE %s", (f"{prefix}%",))
    finally:
        conn.close()


def with_dags_unpaused(stack: RunningStack, dags: tuple[str, ...], tenant_prefix: str):
    """A module fixture's body: the DAGs parsed and unpaused; afterwards the module's tenants deactivated."""
    for dag in dags:
        stack.api.wait_for_dag(dag)
        stack.api.unpause(dag)
    yield stack
    deactivate_tenants(stack.stack, tenant_prefix)




def process_pid(stack, name: str) -> int:
    """The PID supervisord reports for a program's process (0 while it is not running)."""
    return next(p["pid"] for p in Supervisor(stack).processes() if p["name"] == name)


def descendants(pid: int) -> list[int]:
    """Every process below pid, parents before children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and everything below it, as a crash or the OOM killer would: no cleanup runs."""
    victims = [pid, *descendants(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    return victims


@contextlib.contextmanager
def frozen(pid: int):
    """SIGSTOP a process for the block, as a hung one: it keeps its sockets and does nothing; SIGCONT after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def unhealthy(stack: RunningStack) -> list[str]:
    """What `stackctl status` checks: every process RUNNING, the API's components healthy, every worker pongs."""
    return lifecycle.status(stack.stack)[1]


def wait_until_healthy(stack: RunningStack, timeout: float = HEALTHY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while problems := unhealthy(stack):
        if time.monotonic() > deadline:
            pytest.fail(f"stack not healthy after {timeout:.0f}s: {'; '.join(problems)}")
        time.sleep(2)
