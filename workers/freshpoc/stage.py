"""One FreshPoC stage as an operator: readiness check, start the job, wait on the triggerer, check the result.

The call carries the DAG run id as its Idempotency-Key, so a retried or cleared stage gets
the job the run already has instead of starting the work again.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from workers.exceptions import TransientError
from workers.freshpoc import outcome
from workers.freshpoc.keys import run_key

# The sample dbt project shipped with the reference services: the DAG's default repository.
SAMPLE_PROJECT = Path(__file__).resolve().parents[2] / "services" / "freshpoc" / "samples" / "jaffle_shop"


class ServiceJobOperator(BaseOperator):
    template_fields = ("payload",)

    def __init__(self, *, http_conn_id: str, payload: dict | None = None, poll_interval: float = 5.0,
                 request_timeout: float = 30.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.http_conn_id = http_conn_id
        self.payload = payload or {}
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout

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
        self.check_ready()
        run_id = context["run_id"]
        body = {"run_key": run_key(run_id), **self.payload}
        status, answer = self._call("POST", "/api/v1/jobs", json=body, headers={"Idempotency-Key": run_id})
        job = outcome.job_from_answer(self.http_conn_id, status, answer)
        self.log.info("%s job %s is %s (run %s of its work)%s", self.http_conn_id, job["job_id"], job["status"],
                      job["runs"], "" if status == 201 else ": started earlier for this DAG run")
        if job["status"] in outcome.TERMINAL:
            return self.finish(job)
        from workers.freshpoc.trigger import ServiceJobTrigger

        self.defer(
            trigger=ServiceJobTrigger(self.http_conn_id, job["job_id"], self.poll_interval, self.request_timeout),
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
