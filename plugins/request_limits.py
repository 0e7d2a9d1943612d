"""An api-server plugin that refuses oversized DAG-run requests with 400 before Airflow parses them.

Airflow validates a run's conf against the DAG's Params, but accepts keys the Params do not
declare, of any size, and stores the whole conf in the metadata database: one request could
write megabytes into every run row (a backfill copies its `dag_run_conf` into each run it
creates). The limit is `[controlplane] max_dagrun_request_bytes`, on every public API v2
request that carries a DAG-run conf (LIMITED below). The clear and patch bodies carry none;
the execution API's trigger (TriggerDagRunOperator) is called by DAG code with a task token.
"""

from __future__ import annotations

import json
import re

from airflow.configuration import conf
from airflow.plugins_manager import AirflowPlugin

# The POST routes of Airflow 3.3.2's public API whose body holds a DAG-run conf, and what each is.
LIMITED = [
    (re.compile(r"^/api/v2/dags/[^/]+/dagRuns/?$"), "DAG-run request"),        # trigger: conf
    (re.compile(r"^/api/v2/backfills/?$"), "backfill request"),                # create: dag_run_conf
    (re.compile(r"^/api/v2/backfills/dry_run/?$"), "backfill request"),        # dry run: dag_run_conf
    (re.compile(r"^/api/v2/assets/[^/]+/materialize/?$"), "asset materialization request"),  # conf
]
# Our own airflow.cfg option, rendered from airflow/config.yaml like Airflow's.
SECTION, OPTION = "controlplane", "max_dagrun_request_bytes"


class DagRunRequestLimit:
    """Pure ASGI middleware: reads a limited request's body up to the limit, then replays it."""

    def __init__(self, app):
        self.app = app
        self.max_bytes = conf.getint(SECTION, OPTION)

    async def __call__(self, scope, receive, send):
        what = _limited(scope)
        if what is None:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more and len(body) <= self.max_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if len(body) > self.max_bytes:
            await _refuse(send, f"the {what} is over {self.max_bytes} bytes "
                                f"([controlplane] max_dagrun_request_bytes); send less conf")
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _limited(scope) -> str | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    return next((what for path, what in LIMITED if path.match(scope["path"])), None)


async def _refuse(send, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class RequestLimitsPlugin(AirflowPlugin):
    name = "request_limits"
    fastapi_root_middlewares = [{"name": "dag_run_request_limit", "middleware": DagRunRequestLimit}]
