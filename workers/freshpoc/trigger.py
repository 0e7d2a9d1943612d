"""Wait for a service's job on the triggerer: poll GET /api/v1/jobs/{id} until it is finished."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
from airflow.providers.http.hooks.http import HttpAsyncHook
from airflow.triggers.base import BaseTrigger, TriggerEvent

from workers import hooks
from workers.freshpoc.outcome import TERMINAL


def poll_delays(first: float, most: float) -> Iterator[float]:
    """The pauses between polls: `first`, doubling up to `most` (never below `first`).

    Short at first, so a job that ends soon after the stage deferred is seen soon; longer later,
    so a long job costs few requests.
    """
    delay, most = first, max(first, most)
    while True:
        yield delay
        delay = min(delay * 2, most)


class ServiceJobTrigger(BaseTrigger):
    """Yields {"status": "finished", "job": record} or {"status": "error", "http_status", "body"}.

    Polls at once, then after each of poll_delays(poll_interval, max_poll_interval). A 5xx answer
    or a connection error is a service restarting: it is logged and polled again (the task's
    execution_timeout bounds the wait). A 4xx answer (the job is unknown) ends the wait.
    """

    def __init__(self, http_conn_id: str, job_id: str, poll_interval: float = 0.2, request_timeout: float = 30.0,
                 max_poll_interval: float = 5.0):
        super().__init__()
        self.http_conn_id = http_conn_id
        self.job_id = job_id
        self.poll_interval = poll_interval
        self.request_timeout = request_timeout
        # A trigger serialised before the backoff existed has poll_interval 5 and no
        # max_poll_interval: with this default it keeps polling every 5 s.
        self.max_poll_interval = max_poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"http_conn_id": self.http_conn_id, "job_id": self.job_id, "poll_interval": self.poll_interval,
             "request_timeout": self.request_timeout, "max_poll_interval": self.max_poll_interval},
        )

    async def poll_once(self, hook: HttpAsyncHook, session: aiohttp.ClientSession,
                        verify: ssl.SSLContext | bool = True) -> tuple[int, str]:
        """verify: aiohttp's `ssl`. HttpAsyncHook hands aiohttp the extra's `verify` as the deprecated
        `verify_ssl`, a flag, so a CA file there alone would leave aiohttp trusting the public CAs."""
        response = await hook.run(
            session=session, endpoint=f"/api/v1/jobs/{self.job_id}",
            extra_options={"check_response": False, "timeout": aiohttp.ClientTimeout(total=self.request_timeout),
                           "ssl": verify},
        )
        return response.status, await response.text()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = HttpAsyncHook(method="GET", http_conn_id=self.http_conn_id, retry_limit=1)
        verify = (await hooks.ahttp_service(self.http_conn_id)).verify  # the connection's CA, as the tasks take it
        delays = poll_delays(self.poll_interval, self.max_poll_interval)
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    status, body = await self.poll_once(hook, session, verify)
                except (TimeoutError, aiohttp.ClientError) as exc:
                    self.log.warning("%s: polling job %s failed (%r); polling again", self.http_conn_id,
                                     self.job_id, exc)
                else:
                    if 400 <= status < 500:
                        yield TriggerEvent({"status": "error", "http_status": status, "body": body})
                        return
                    if status < 400:
                        job = json.loads(body)
                        if job["status"] in TERMINAL:
                            yield TriggerEvent({"status": "finished", "job": job})
                            return
                    else:
                        self.log.warning("%s answered %s while polling %s; polling again", self.http_conn_id,
                                         status, self.job_id)
                await asyncio.sleep(next(delays))
