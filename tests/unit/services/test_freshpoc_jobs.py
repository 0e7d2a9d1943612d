"""Job records and idempotency over a real file:// object store."""

import threading
import time

import pytest

from services.freshpoc.jobs import JobError, JobStore, job_id
from workers import storage


class Work:
    """A job body that counts its runs; it can fail, or wait until released."""

    def __init__(self):
        self.runs = 0
        self.fail_with: JobError | Exception | None = None
        self.release = threading.Event()
        self.release.set()

    def __call__(self, request: dict, key: str) -> dict:
        self.release.wait(10)
        self.runs += 1
        if self.fail_with:
            raise self.fail_with
        return {"echo": request["run_key"], "key": key}


def finished(store: JobStore, ident: str) -> dict:
    for _ in range(200):
        record = store.get(ident)
        if record["status"] != "running":
            return record
        threading.Event().wait(0.02)
    raise AssertionError("the job did not finish")


@pytest.fixture
def base(tmp_path):
    return storage.root(f"file://{tmp_path}/objects")


@pytest.fixture
def work():
    return Work()


def test_the_same_key_returns_the_same_job_and_never_reruns_it(base, work):
    store = JobStore(base, "miner", work)
    record, started = store.submit("run-1", {"run_key": "r1"})
    assert started and record["status"] == "running" and record["job_id"] == job_id("miner", "run-1")
    done = finished(store, record["job_id"])
    assert done["status"] == "succeeded" and done["result"] == {"echo": "r1", "key": "run-1"}
    again, started = store.submit("run-1", {"run_key": "r1"})
    assert not started and again["status"] == "succeeded" and again["runs"] == 1
    assert work.runs == 1


def test_idempotency_survives_a_restart_of_the_service(base, work):
    first = JobStore(base, "writer", work)
    ident = first.submit("run-1", {"run_key": "r1"})[0]["job_id"]
    finished(first, ident)
    first.shutdown()
    restarted = JobStore(base, "writer", work)
    record, started = restarted.submit("run-1", {"run_key": "r1"})
    assert not started and record["status"] == "succeeded" and work.runs == 1


def test_a_job_cut_short_by_a_restart_reads_as_503_and_runs_again(base, work):
    work.release.clear()  # the first process never finishes the job
    first = JobStore(base, "writer", work)
    ident = first.submit("run-1", {"run_key": "r1"})[0]["job_id"]
    restarted = JobStore(base, "writer", work)
    assert restarted.get(ident)["error"] == {"status": 503,
                                            "message": "the job was interrupted by a restart of the service"}
    record, started = restarted.submit("run-1", {"run_key": "r1"})
    assert started and record["runs"] == 2
    work.release.set()
    assert finished(restarted, ident)["status"] == "succeeded"


def test_a_job_failed_by_the_service_runs_again_but_one_failed_on_input_does_not(base, work):
    store = JobStore(base, "miner", work)
    work.fail_with = RuntimeError("disk full")
    ident = store.submit("run-1", {"run_key": "r1"})[0]["job_id"]
    assert finished(store, ident)["error"] == {"status": 500, "message": "RuntimeError: disk full"}
    work.fail_with = JobError(422, "models/a.sql refers to 'missing'")
    assert store.submit("run-1", {"run_key": "r1"})[1] is True
    assert finished(store, ident)["error"]["status"] == 422
    record, started = store.submit("run-1", {"run_key": "r1"})
    assert not started and record["error"]["message"] == "models/a.sql refers to 'missing'" and work.runs == 2


def test_a_key_reused_for_another_request_is_a_conflict(base, work):
    store = JobStore(base, "miner", work)
    store.submit("run-1", {"run_key": "r1"})
    with pytest.raises(JobError) as conflict:
        store.submit("run-1", {"run_key": "other"})
    assert conflict.value.status == 409


def test_records_live_in_object_storage_per_service(base, work):
    store = JobStore(base, "analyzer", work)
    ident = store.submit("run-1", {"run_key": "r1"})[0]["job_id"]
    finished(store, ident)
    assert storage.read_json(base / "freshpoc" / "jobs" / "analyzer" / f"{ident}.json")["status"] == "succeeded"


def test_wait_returns_as_soon_as_the_job_ends_or_the_running_record_after_the_timeout(base, work):
    store = JobStore(base, "miner", work)
    work.release.clear()
    ident = store.submit("run-1", {"run_key": "r1"})[0]["job_id"]
    assert store.wait(ident, 0.2)["status"] == "running"  # still held back: the record as it stands
    threading.Timer(0.2, work.release.set).start()
    began = time.monotonic()
    assert store.wait(ident, 5)["status"] == "succeeded"
    assert time.monotonic() - began < 2  # woken by the job's end, not by the timeout
    assert store.wait("miner-unknown", 5) is None
