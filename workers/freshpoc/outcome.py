"""What a stage makes of a service's answer: a job to wait on, a result, or which kind of failure.

    4xx answer or a job that failed with a 4xx error   ServiceRejected: fail now, with the service's message
    5xx answer, timeout, or a job failed with 5xx       TransientError: Airflow retries with backoff
"""

from __future__ import annotations

import json

from airflow.sdk.exceptions import AirflowFailException

from workers.exceptions import TransientError

TERMINAL = ("succeeded", "failed")


class ServiceRejected(AirflowFailException):
    """The service refused the request or the job's input (4xx): the same call would fail again."""


def message_of(body: str) -> str:
    """The service's own message: FastAPI's {"detail": ...} when there is one, else the raw body."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else body[:1000]


def raise_for_status(service: str, status: int, body: str) -> None:
    if status < 400:
        return
    message = f"{service} answered {status}: {message_of(body)}"
    if status < 500:
        raise ServiceRejected(message)
    raise TransientError(message)


def job_from_answer(service: str, status: int, body: str) -> dict:
    """The job record of a POST /api/v1/jobs or GET /api/v1/jobs/{id} answer."""
    raise_for_status(service, status, body)
    try:
        job = json.loads(body)
    except ValueError:
        raise TransientError(f"{service} answered {status} with a body that is not JSON: {body[:200]}") from None
    if not isinstance(job, dict) or job.get("status") not in ("running", *TERMINAL) or not job.get("job_id"):
        raise TransientError(f"{service} answered {status} without a job record: {body[:200]}")
    return job


def job_result(service: str, job: dict) -> dict:
    """A finished job's result, or the failure it stands for."""
    if job["status"] == "succeeded":
        return job["result"]
    error = job.get("error") or {"status": 500, "message": "no error given"}
    message = f"{service} job {job['job_id']} failed with {error['status']}: {error['message']}"
    if 400 <= int(error["status"]) < 500:
        raise ServiceRejected(message)
    raise TransientError(message)
