"""The triggerer SIGKILLed while a FreshPoC stage is deferred: the stage resumes, and no job runs twice.

A deferred stage's job was started by the task before it deferred (workers/freshpoc/stage.py);
its trigger only polls that job's id. When the triggerer dies, its trigger row stays in the
database; once the dead triggerer's heartbeat is older than [triggerer]
triggerer_health_check_threshold (30 s), the triggerer supervisord started again takes the
trigger over and polls the same job. Nothing starts the work again, so each reference service
ran exactly one job for the run.
"""

from __future__ import annotations

import time

import pytest

from services.freshpoc.jobs import job_id
from tests.e2e.test_freshpoc import DAG, admin, service_url
from tests.polling import wait_for
from workers import storage
from workers.freshpoc.keys import run_key
from workers.freshpoc.services import BY_NAME, JOB_SERVICES

from .conftest import storage_base, wait_until_healthy, with_dags_unpaused
from .test_survives_faults import restart_hard, task_states

pytestmark = pytest.mark.e2e
PREFIX = "rz-trig-"
SERVICE = "miner"  # its stage is the one deferred when the triggerer dies
STAGE = BY_NAME[SERVICE].stage
STAGE_SERVICES = {service.stage: service.name for service in JOB_SERVICES}
# The miner's job waits this long before it works, so it is still running when the triggerer dies:
# time for the stage to defer, a triggerer to take its trigger and the test to see it, also on a
# machine busy with the other suites (25 s left only seconds to spare there).
JOB_DELAY_S = 40


@pytest.fixture(scope="module")
def freshpoc(running_stack):
    yield from with_dags_unpaused(running_stack, (DAG,), PREFIX)


@pytest.fixture(autouse=True)
def healthy_after(freshpoc):
    yield
    wait_until_healthy(freshpoc)


@pytest.fixture
def slow_miner(freshpoc):
    """The miner's jobs are slow (its fault-injection plan) for the test; the plan is cleared after."""
    url = f"{service_url(freshpoc.stack, SERVICE)}/admin/faults"
    with admin(freshpoc.stack) as client:
        response = client.put(url, json={"job_delay_s": JOB_DELAY_S, "ttl_s": 600})
        assert response.status_code == 200, response.text
        yield
        client.delete(url)


def polled_by_a_triggerer(api, run_id: str) -> int | None:
    """The id of the triggerer job that holds the stage's trigger, while the stage is deferred."""
    ti = next(ti for ti in api.task_instances(DAG, run_id) if ti["task_id"] == STAGE)
    return (ti["trigger"] or {}).get("triggerer_id") if ti["state"] == "deferred" else None


def jobs_folder(stack, service: str):
    """Where a reference service keeps its job records (services/freshpoc/jobs.py)."""
    return storage_base(stack) / "freshpoc" / "jobs" / service


def jobs_started(stack, run_id: str) -> dict[str, int]:
    """Per stage, how often its service started work for this run, from the services' job records.

    Every record whose request names the run counts, whatever its idempotency key, and each
    record's `runs` counts its starts: a second job and a restarted one both show.
    """
    key = run_key(run_id)
    started = {}
    for stage, service in STAGE_SERVICES.items():
        records = [storage.read_json(path) for path in jobs_folder(stack, service).iterdir()
                   if path.name.endswith(".json")]
        started[stage] = sum(r["runs"] for r in records if r["request"]["run_key"] == key)
    return started


def test_the_triggerer_killed_while_a_stage_is_deferred_the_stage_resumes_and_no_job_runs_twice(
        freshpoc, slow_miner):
    stack, api = freshpoc.stack, freshpoc.api
    run_id = api.trigger(DAG, {})
    old_triggerer = wait_for(lambda: polled_by_a_triggerer(api, run_id), 240,
                             f"{STAGE} deferred, its trigger held by a triggerer", poll=0.5)
    miner_job = storage.read_json(jobs_folder(stack, SERVICE) / f"{job_id(SERVICE, run_id)}.json")
    assert miner_job["status"] == "running", f"the miner's job ended before the kill: {miner_job}"

    killed_at = time.monotonic()
    restart_hard(stack, "triggerer")
    # Deferred until a triggerer takes the trigger over and the job's end fires it.
    wait_for(lambda: task_states(api, DAG, run_id)[STAGE][0] != "deferred", 180, f"{STAGE} to resume")
    resumed_s = time.monotonic() - killed_at

    run = api.wait_for_run(DAG, run_id, timeout=300)
    states = task_states(api, DAG, run_id)
    assert run["state"] == "success", states
    # Resuming a deferral is not a retry: every stage, the deferred one too, is on its first try.
    assert states == {stage: ("success", 1) for stage in STAGE_SERVICES}
    started = jobs_started(stack, run_id)
    assert started == dict.fromkeys(STAGE_SERVICES, 1), f"a stage's work was started more than once: {started}"
    print(f"\nEVIDENCE triggerer: SIGKILLed (triggerer job {old_triggerer}) while {STAGE} was deferred on a"
          f" running miner job; the stage resumed {resumed_s:.0f}s after the kill on try 1, run green,"
          f" one job per stage: {started}")
