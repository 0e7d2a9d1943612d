"""`stackctl backup` of the running stack, `stackctl restore` into a fresh one: the same models served,
the same run history, and the three DAGs green on the restored stack.

The source is this suite's session stack after one run of each DAG; the target is a second stack of
its own, on its own ports and state folder, torn down at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stackctl.native.airflow_api import AirflowApi
from stackctl.native.stack import NativeStack
from tests.e2e.conftest import (
    API_TIMEOUT_S,
    STACKCTL_ENV,
    free_ports,
    port_args,
    stack_home,
    stackctl,
    start_slot,
)
from tests.polling import wait_for

from .conftest import seed_tenant, training_row, with_dags_unpaused
from .test_deploy_races import no_run_pending

pytestmark = pytest.mark.e2e
TRAINING, DQ, FRESHPOC = "tenant_model_training", "data_quality_check", "FreshPoC_E2E"
PREFIX = "rz-backup-"
TENANT = f"{PREFIX}acme"


def run_all_green(api: AirflowApi) -> dict[str, str]:
    """One run of each DAG, side by side (the tenant's training and DQ check, FreshPoC), all successful."""
    runs = {TRAINING: api.trigger(TRAINING, {"tenant_id": TENANT}), DQ: api.trigger(DQ, {"tenant_id": TENANT}),
            FRESHPOC: api.trigger(FRESHPOC)}
    states = {dag: api.wait_for_run(dag, run_id, timeout=600)["state"] for dag, run_id in runs.items()}
    assert states == {dag: "success" for dag in runs}
    return runs


def run_history(api: AirflowApi) -> set[tuple[str, str, str]]:
    runs = api.request("GET", "/dags/~/dagRuns", params={"limit": 1000})["dag_runs"]
    return {(run["dag_id"], run["dag_run_id"], run["state"]) for run in runs}


def served_versions(stack: NativeStack) -> dict[str, str]:
    return httpx.get(f"{stack.url('inference')}/health", verify=stack.verify, timeout=10).json()["versions"]


@pytest.fixture(scope="module")
def source(running_stack):
    yield from with_dags_unpaused(running_stack, (TRAINING, DQ, FRESHPOC), PREFIX)


@pytest.fixture(scope="module")
def target():
    """A fresh stack, started in the background (alongside the source's runs): call it to wait for it."""
    home = stack_home()
    names = list(NativeStack.load(home).source["ports"])
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    with start_slot() as slot:  # the child holds it on until its start ends
        up = subprocess.Popen([sys.executable, "-m", "stackctl", "--home", str(home), "up", *port_args(ports)],
                              env=STACKCTL_ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              pass_fds=(slot.fileno(),))

    def started() -> Path:
        output, _ = up.communicate(timeout=600)
        if up.returncode != 0:
            pytest.fail(f"stackctl up (the target) failed:\n{output}")
        return home

    try:
        yield started
    finally:
        if up.poll() is None:
            up.kill()
        up.wait()
        stackctl(home, "down", timeout=180)
        shutil.rmtree(home, ignore_errors=True)


# Two stacks and six DAG runs, and as the suite's first test it also counts the session stack's start:
# 15 minutes (pyproject's default) were used up beside the other suites.
@pytest.mark.timeout(1800)
def test_a_restored_stack_serves_the_same_models_shows_the_same_runs_and_runs_every_dag(source, target, tmp_path):
    # Unpausing starts the training schedule's latest firing: let it end before the tenant exists.
    wait_for(lambda: no_run_pending(source.api), 300, f"{TRAINING}'s scheduled run to end")
    seed_tenant(source.stack, TENANT, 20_000, seed=51)
    training_run = run_all_green(source.api)[TRAINING]
    version = training_row(source.stack, training_run, TENANT)[2]
    history, versions = run_history(source.api), served_versions(source.stack)
    assert versions[TENANT] == version

    started = time.monotonic()
    made = source.stackctl("backup", str(tmp_path / "backup"))
    assert made.returncode == 0, made.stderr
    backed_up = time.monotonic() - started
    target = target()
    assert stackctl(target, "restore", str(tmp_path / "missing")).returncode == 2  # no backup: refused, untouched

    started = time.monotonic()
    restored = stackctl(target, "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, f"{restored.stdout}\n{restored.stderr}"
    print(f"\nEVIDENCE backup {backed_up:.0f}s, restore {time.monotonic() - started:.0f}s:\n{restored.stdout}")

    stack = NativeStack.load(target)
    # The backup's admin password is now the target's (stackctl/ops/backup.py: DATA_SECRETS).
    api = AirflowApi(stack.url("api"), stack.source["admin_user"], stack.read_secret("admin_password"),
                     timeout=API_TIMEOUT_S, verify=stack.verify)
    try:
        assert served_versions(stack) == versions
        assert history <= run_history(api)  # every run, with its state; the target's scheduler may add later ones
        again = stackctl(target, "restore", str(tmp_path / "backup"))
        assert again.returncode == 2 and "already has data" in again.stderr  # a used stack needs --force
        run_all_green(api)
    finally:
        api.close()
