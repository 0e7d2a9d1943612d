"""The stage operator and its trigger against a real miner service on a local port (no stack)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pendulum
import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from prometheus_client.parser import text_string_to_metric_families

from services.freshpoc.app import create_app
from services.freshpoc.faults import FaultPlan, Faults
from services.freshpoc.stages import Context, ingest
from stackctl.native import certificates
from tests.local_server import serving
from workers import storage
from workers.exceptions import TransientError
from workers.freshpoc.confine import Policy
from workers.freshpoc.keys import run_key
from workers.freshpoc.outcome import ServiceRejected
from workers.freshpoc.stage import JOB_WAITS, SAMPLE_PROJECT, ServiceJobOperator
from workers.freshpoc.trigger import ServiceJobTrigger

RUN_ID = "manual__2026-11-24T03:00:00+00:00"
JOB_TOKEN = "job-token-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Miner:
    faults: Faults
    client: httpx.Client

    def requests(self) -> dict[str, int]:
        """How many requests the service answered, by endpoint (its /metrics)."""
        text = self.client.get("/metrics").text
        return {sample.labels["endpoint"]: int(sample.value) for family in text_string_to_metric_families(text)
                if family.name == "freshpoc_requests" for sample in family.samples
                if sample.name == "freshpoc_requests_total" and sample.labels["endpoint"] != "/metrics"}


def serving_miner(tmp_path, monkeypatch, tls: Path | None = None) -> Iterator[Miner]:
    """A miner service with the sample project ingested for RUN_ID; its connection as AIRFLOW_CONN_*
    (with tls, over HTTPS, verified against the folder's CA as the settings render it)."""
    samples = Policy(allowed_roots=(SAMPLE_PROJECT.parent,), max_clone_bytes=2**20, clone_timeout_s=30)
    ctx = Context(base=storage.root(f"file://{tmp_path}/objects"), connect_db=None, ingestion=samples)
    ingest(ctx, {"run_key": run_key(RUN_ID), "repository": str(SAMPLE_PROJECT)}, RUN_ID)
    faults = Faults()
    with serving(create_app("miner", ctx, faults, None, JOB_TOKEN), tls) as client:
        # The connection carries the job routes' token as its password, as config.yaml's does.
        monkeypatch.setenv("AIRFLOW_CONN_FRESHPOC_MINER", json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": client.base_url.port,
             "schema": client.base_url.scheme, "extra": {"verify": str(tls / "ca.crt")} if tls else {},
             "login": "airflow", "password": JOB_TOKEN}))
        client.headers["Authorization"] = f"Bearer {JOB_TOKEN}"
        yield Miner(faults, client)


@pytest.fixture
def miner(tmp_path, monkeypatch):
    yield from serving_miner(tmp_path, monkeypatch)


@pytest.fixture
def https_miner(tmp_path, monkeypatch):
    certificates.ensure(tmp_path / "tls", "test", {"host": ["127.0.0.1"]})
    yield from serving_miner(tmp_path, monkeypatch, tmp_path / "tls")


def operator(job_wait: str = "adaptive") -> ServiceJobOperator:
    return ServiceJobOperator(task_id="miner_run", http_conn_id="freshpoc_miner", job_wait=job_wait,
                              execution_timeout=pendulum.duration(minutes=30))  # as the DAG's default_args


def wait_on_trigger(trigger: ServiceJobTrigger) -> dict:
    async def first_event():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(asyncio.wait_for(first_event(), 30))


def test_a_short_job_ends_in_the_start_call_without_a_health_check_or_a_deferral(miner):
    result = operator().execute({"run_id": RUN_ID})  # no TaskDeferred: the answer held the finished job
    assert result["project"] == "jaffle_shop" and "customers" in result["models"]
    assert miner.requests() == {"/api/v1/jobs": 1}  # readiness and start in one round trip


def test_the_fixed_5s_wait_of_before_checks_health_starts_and_defers_to_a_5s_poll(miner):
    with pytest.raises(TaskDeferred) as deferred:
        operator("fixed_5s").execute({"run_id": RUN_ID})
    assert miner.requests() == {"/health": 1, "/api/v1/jobs": 1}
    kwargs = deferred.value.trigger.serialize()[1]
    assert (kwargs["poll_interval"], kwargs["max_poll_interval"]) == (5.0, 5.0)


def test_an_unknown_job_wait_fails_at_once_naming_the_choices(miner):
    with pytest.raises(AirflowFailException, match=r"job_wait 'slow' is not one of \['adaptive', 'fixed_5s'\]"):
        operator("slow").execute({"run_id": RUN_ID})
    assert miner.requests() == {}
    assert sorted(JOB_WAITS) == ["adaptive", "fixed_5s"]


def test_a_stage_defers_to_the_trigger_and_returns_the_job_result(miner):
    miner.faults.set(FaultPlan(job_delay_s=1.5))  # longer than the start's answer waits
    op = operator()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"run_id": RUN_ID})
    trigger = deferred.value.trigger
    job_id = trigger.job_id
    assert trigger.serialize() == ("workers.freshpoc.trigger.ServiceJobTrigger", {
        "http_conn_id": "freshpoc_miner", "job_id": job_id, "poll_interval": 0.2, "request_timeout": 30.0,
        "max_poll_interval": 5.0})
    assert deferred.value.method_name == "execute_complete"
    # The task runner's msgpack encoder refuses pendulum's Duration: the deferral timeout must be a timedelta.
    assert type(deferred.value.timeout) is timedelta and deferred.value.timeout.total_seconds() == 1800
    event = wait_on_trigger(trigger)
    assert event["status"] == "finished" and event["job"]["runs"] == 1
    result = op.execute_complete({"run_id": RUN_ID}, event)
    assert result["project"] == "jaffle_shop" and "customers" in result["models"]

    # Run again (a retry or a cleared task): the finished job comes back at once, not run again.
    assert operator().execute({"run_id": RUN_ID}) == result
    again = wait_on_trigger(ServiceJobTrigger("freshpoc_miner", job_id, 0.2))
    assert again["job"]["runs"] == 1


def test_over_https_the_stage_and_its_trigger_verify_the_service_against_the_connection_s_ca(https_miner):
    https_miner.faults.set(FaultPlan(job_delay_s=1.5))  # the trigger polls too
    op = operator()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({"run_id": RUN_ID})
    event = wait_on_trigger(deferred.value.trigger)
    assert event["status"] == "finished"
    assert op.execute_complete({"run_id": RUN_ID}, event)["project"] == "jaffle_shop"
    assert https_miner.requests()["/api/v1/jobs/{job_id}"] >= 1  # the trigger's polls reached it


def test_a_stage_that_trusts_another_ca_is_refused_and_retried(https_miner, tmp_path, monkeypatch):
    certificates.ensure(tmp_path / "other", "other", {"host": ["127.0.0.1"]})
    connection = json.loads(os.environ["AIRFLOW_CONN_FRESHPOC_MINER"])
    monkeypatch.setenv("AIRFLOW_CONN_FRESHPOC_MINER",
                       json.dumps({**connection, "extra": {"verify": str(tmp_path / "other" / "ca.crt")}}))
    with pytest.raises(TransientError, match="certificate verify failed"):
        operator().execute({"run_id": RUN_ID})


def test_a_400_fails_without_retry_and_with_the_service_message(miner):
    miner.faults.set(FaultPlan(reject_400="project is under a legal hold"))
    with pytest.raises(ServiceRejected, match="freshpoc_miner answered 400: project is under a legal hold"):
        operator().execute({"run_id": RUN_ID})


def test_a_503_is_retryable(miner):
    miner.faults.set(FaultPlan(fail_503_times=1))
    with pytest.raises(TransientError, match="answered 503"):
        operator().execute({"run_id": RUN_ID})
    assert operator().execute({"run_id": RUN_ID})["project"] == "jaffle_shop"  # the next try goes through


def test_a_timeout_is_retryable(miner):
    miner.faults.set(FaultPlan(response_delay_s=3))
    op = ServiceJobOperator(task_id="miner_run", http_conn_id="freshpoc_miner", request_timeout=1)
    with pytest.raises(TransientError, match="POST /api/v1/jobs failed"):
        op.execute({"run_id": RUN_ID})


def test_bad_input_is_a_422_that_fails_the_stage(miner):
    op = operator()
    with pytest.raises(ServiceRejected, match="answered 422: source/MANIFEST.json is missing"):
        op.execute({"run_id": "manual__never_ingested"})


def test_a_service_that_is_down_is_retryable(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_FRESHPOC_MINER", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": free_port(), "schema": "http"}))
    with pytest.raises(TransientError, match="POST /api/v1/jobs failed"):
        operator().execute({"run_id": RUN_ID})


def test_a_job_that_failed_on_its_input_fails_the_stage_after_the_wait():
    op = operator()
    event = {"status": "finished", "job": {"job_id": "miner-1", "status": "failed",
                                           "error": {"status": 422, "message": "models/a.sql refers to 'x'"}}}
    with pytest.raises(ServiceRejected, match="failed with 422: models/a.sql refers to 'x'"):
        op.execute_complete({}, event)
    event["job"]["error"]["status"] = 500
    with pytest.raises(TransientError):
        op.execute_complete({}, event)


def test_the_trigger_sees_a_job_end_soon_after_it_ends(miner):
    """Polls back off from 0.2 s: a job that ends half a second in is seen long before a 5 s poll would."""
    miner.faults.set(FaultPlan(job_delay_s=0.5))
    started = miner.client.post("/api/v1/jobs", json={"run_key": run_key(RUN_ID)}, headers={"Idempotency-Key": RUN_ID})
    assert started.json()["status"] == "running"
    began = time.monotonic()
    event = wait_on_trigger(ServiceJobTrigger("freshpoc_miner", started.json()["job_id"]))
    assert event["status"] == "finished" and time.monotonic() - began < 2.5
