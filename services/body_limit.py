"""Refuse request bodies over a per-service limit with 413, before the app reads them.

FastAPI reads a whole JSON body into memory before validating it, so without a limit one
request can make a service hold gigabytes. BodyLimit is a pure ASGI middleware: it refuses a
declared Content-Length over the limit without reading a byte, and counts a body that comes
without one (chunked) as it arrives, so a chunked upload cannot get past it. It reads the
body (at most the limit) before the app runs and then replays it; every body these services
take is small.

Install it first in create_app, before instrument(), so the metrics count the 413s:

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES["inference"])
"""

from __future__ import annotations

import json

# The one place for the limits, in bytes: each is the service's largest real request with room
# to spare (a JSON string escaped as \uXXXX takes 6 bytes a character), and far below harm.
MAX_BODY_BYTES = {
    # POST /api/v1/deploy {"tenant_id", "version"} and /api/v1/cache/warm {"tenant_id"}: a tenant
    # slug is at most 63 characters and a version 14, so a real body is under 200 bytes.
    "inference": 4 * 1024,
    # POST /api/v1/jobs: a run_key and, for ingestion, a repository of at most 2000 characters
    # (12 000 bytes if every one is \u-escaped); PUT /admin/faults is a handful of small fields.
    "freshpoc": 16 * 1024,
    # POST /webhook: Alertmanager sends every alert of a group in one notification (about 1-2 KB
    # an alert: labels, annotations, URLs) and does not retry a 4xx, so a refused notification
    # is a lost page: 1 MiB holds several hundred alerts, far more than our rules can fire at once.
    "oncall_inbox": 1024 * 1024,
}


class BodyLimit:
    """Pure ASGI middleware: 413, naming the limit, for a request body over `max_bytes`."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)  # without reading the body
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:  # a chunked body, or one longer than it declared
                await self._refuse(send)
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the disconnect, for streaming responses
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        payload = json.dumps({"detail": f"the request body is over this service's limit of "
                                        f"{self.max_bytes} bytes (MAX_BODY_BYTES in services/body_limit.py)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                # the rest of the body is never read: the connection cannot be reused
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})
