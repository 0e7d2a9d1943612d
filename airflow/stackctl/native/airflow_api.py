"""A small client of the Airflow REST API v2 (JWT auth), used by the demo, the tests and the benchmark."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

TERMINAL_RUN_STATES = {"success", "failed"}


class ApiError(Exception):
    def __init__(self, response: httpx.Response):
        self.status_code = response.status_code
        request = response.request
        super().__init__(f"{request.method} {request.url.path} -> {response.status_code}: {response.text[:500]}")


@dataclass
class AirflowApi:
    base_url: str
    username: str
    password: str = field(repr=False)
    timeout: float = 30.0
    verify: ssl.SSLContext | bool = field(default=True, repr=False)  # NativeStack.verify, for HTTPS

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.base_url, timeout=self.timeout, verify=self.verify)
        self._client.headers["Authorization"] = f"Bearer {self.token()}"

    def token(self) -> str:
        response = self._client.post("/auth/token", json={"username": self.username, "password": self.password})
        if response.status_code not in (200, 201):
            raise ApiError(response)
        return response.json()["access_token"]

    def request(self, method: str, path: str, **kwargs) -> dict:
        response = self._client.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json()

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Wait until the dag-processor has parsed the DAG into the database."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request("GET", f"/dags/{dag_id}")
                return
            except ApiError as exc:
                if exc.status_code != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(2)

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 1.0,
                     on_poll: Callable[[dict], None] = lambda run: None) -> dict:
        """Poll the run until it ends; on_poll sees the run at every poll, the last one included."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            on_poll(run)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(poll)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})[
            "task_instances"
        ]

    def close(self) -> None:
        self._client.close()
