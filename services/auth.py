"""The bearer token that guards a reference service's routes which change state or read private data.

A client sends `Authorization: Bearer <token>` (Alertmanager's webhook) or HTTP basic auth with
the token as its password (Airflow's HTTP hooks send a connection's login and password that way);
anything else is a 401 that says which header is missing. Each service reads its token from a file
(`--token-file`, a generated 0600 secret), never from its command line.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from pathlib import Path

from fastapi import Header, HTTPException


def read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise SystemExit(f"the token file {path} is empty")
    return token


def _presented(authorization: str) -> str:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


def require_token(token: str) -> Callable[[str], None]:
    """A FastAPI dependency that refuses a request without the token."""
    def check(authorization: str = Header("")) -> None:
        if not hmac.compare_digest(_presented(authorization).encode(), token.encode()):
            raise HTTPException(401, "this route needs the service's token: Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})

    return check
