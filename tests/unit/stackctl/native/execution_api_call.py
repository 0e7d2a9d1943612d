"""Run by test_api_tls.py in a process of its own, whose environment holds the [api] settings (the task
SDK reads them when it is imported): a GET of argv[1]'s /execution/health with the client a task's
supervisor uses. Prints the status code, or the error."""

from __future__ import annotations

import sys

import httpx
from airflow.sdk.api.client import Client

try:
    print(Client(base_url=sys.argv[1], token="unused").get("health").status_code)
except httpx.TransportError as exc:
    print(f"refused: {exc}")
