"""One FreshPoC stage as an operator: start the job, wait on the triggerer if it has not ended, check the result.

The call carries the DAG run id as its Idempotency-Key, so a retried or cleared stage gets
the job the run already has instead of starting the work again.

The start is also the readiness check (a service that is down or answers 5xx is retried), and
it asks the service to answer once the job has ended, for up to a second: a short job's stage
ends in that one round trip, without a deferral. A longer job is polled on the triggerer,
soon at first and then less often.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from workers.exceptions import TransientError
from workers.freshpoc import outcome
from workers.freshpoc.keys import run_key

# The sample dbt project shipped with the reference services: the DAG's default repository.
SAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "services" / "freshpoc" / "samples" / "jaffle_shop"


@dataclass(frozen=True)
class JobWait:
    """How a stage waits for its job."""

    start_wait_s: float       # the service may hold the start's answer this long for the job to end
    first_poll_s: float       # the trigger's first pause between polls, doubling from there...
    max_poll_s: float         # ...up to this
    check_ready_first: bool   # a GET /health of its own before the start


JOB_WAITS = {
    "adaptive": JobWait(start_wait_s=1.0, first_poll_s=0.2, max_poll_s=5.0, check_ready_first=False),
    # How stages waited before issue 18, kept so bench/freshpoc_bench.py measures both in one run.
    "fixed_5s": JobWait(start_wait_s=0.0, first_poll_s=5.0, max_poll_s=5.0, check_ready_first=True),
}


class ServiceJobOperator(BaseOperator):
    template_fields = ("payload", "job_wait")

    def __init__(self, *, http_conn_id: str, payload: dict | None = None, job_wait: str = "adaptive",
                 request_timeout: float = 30.0, **kwargs: Any):
        """job_wait names one of JOB_WAITS (templated: the DAG takes it from a param)."""
        super().__init__(**kwargs)
        self.http_conn_id = http_conn_id
        self.payload = payload or {}
        self.job_wait = job_wait
        self.request_timeout = request_timeout

    def wait_plan(self) -> JobWait:
        try:
            return JOB_WAITS[self.job_wait]
        except KeyError:
            raise AirflowFailException(f"job_wait {self.job_wait!r} is not one of {sorted(JOB_WAITS)}") from None

    def _call(self, method: str, endpoint: str, **kwargs: Any) -> tuple[int, str]:
        import requests
        from airflow.providers.http.hooks.http import HttpHook

        hook = HttpHook(method=method, http_conn_id=self.http_conn_id)
        try:
            response = hook.run(endpoint, extra_options={"check_response": False, "timeout": self.request_timeout},
                                **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{self.http_conn_id}: {method} {endpoint} failed: {exc}") from exc
        return response.status_code, response.text

    def check_ready(self) -> None:
        status, body = self._call("GET", "/health")
        if status != 200:
            raise TransientError(f"{self.http_conn_id} is not ready: /health answered {status}: {body[:300]}")

    def execute(self, context) -> dict:
        wait = self.wait_plan()
        if wait.check_ready_first:
            self.check_ready()
        run_id = context["run_id"]
        body = {"run_key": run_key(run_id), **self.payload}
        status, answer = self._call("POST", "/api/v1/jobs", json=body, headers={"Idempotency-Key": run_id},
                                    params={"wait_s": wait.start_wait_s} if wait.start_wait_s else None)
        job = outcome.job_from_answer(self.http_conn_id, status, answer)
        self.log.info("%s job %s is %s (run %s of its work)%s", self.http_conn_id, job["job_id"], job["status"],
                      job["runs"], "" if status == 201 else ": started earlier for this DAG run")
        if job["status"] in outcome.TERMINAL:
            return self.finish(job)
        from workers.freshpoc.trigger import ServiceJobTrigger

        self.defer(
            trigger=ServiceJobTrigger(self.http_conn_id, job["job_id"], wait.first_poll_s, self.request_timeout,
                                      wait.max_poll_s),
            method_name="execute_complete",
            # A plain timedelta: the task runner cannot serialise pendulum's Duration.
            timeout=timedelta(seconds=(self.execution_timeout or timedelta(minutes=30)).total_seconds()),
        )

    def execute_complete(self, context, event: dict) -> dict:
        if event["status"] == "error":
            outcome.raise_for_status(self.http_conn_id, event["http_status"], event["body"])
        return self.finish(event["job"])

    def finish(self, job: dict) -> dict:
        result = outcome.job_result(self.http_conn_id, job)
        self.log.info("%s job %s succeeded: %s", self.http_conn_id, job["job_id"], result)
        return result
