"""POST /webhook takes Alertmanager's notifications; GET /notifications lists them, oldest first.

Both need the inbox's token (services/auth.py): Alertmanager's webhook sends it, so no other
local process can forge a page, and pages name tenants and failures, so reading them needs it too.

Notifications are appended to a JSON-lines file, so they survive a restart and can be read
with any tool: this is where a user of the native stack sees a page arrive.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request

from ..auth import require_token
from ..body_limit import MAX_BODY_BYTES, BodyLimit


def create_app(inbox: Path, token: str) -> FastAPI:
    app = FastAPI(title="oncall-inbox")
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES["oncall_inbox"])
    lock = threading.Lock()
    inbox.parent.mkdir(parents=True, exist_ok=True)

    authenticated = [Depends(require_token(token))]

    @app.post("/webhook", dependencies=authenticated)
    async def webhook(request: Request) -> dict:
        try:
            payload = await request.json()
        except ValueError:
            raise HTTPException(422, "the body is not JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise HTTPException(422, "not an Alertmanager notification: no alerts list")
        record = {"received_at": time.time(), **payload}
        with lock, inbox.open("a") as f:
            f.write(json.dumps(record) + "\n")
        return {"recorded": len(payload["alerts"])}

    @app.get("/notifications", dependencies=authenticated)
    def notifications() -> list[dict]:
        if not inbox.exists():
            return []
        with lock:
            return [json.loads(line) for line in inbox.read_text().splitlines() if line.strip()]

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app
