"""The api-server plugin that refuses oversized DAG-run triggers, on a small Starlette app."""

from __future__ import annotations

import asyncio
import importlib

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

LIMIT = 1000


async def echo(request):
    return JSONResponse({"received": len(await request.body())})


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CONTROLPLANE__MAX_DAGRUN_REQUEST_BYTES", str(LIMIT))
    plugin = importlib.import_module("plugins.request_limits")
    app = Starlette(routes=[Route("/api/v2/dags/{dag_id}/dagRuns", echo, methods=["POST"]),
                            Route("/api/v2/variables", echo, methods=["POST"])])
    app.add_middleware(plugin.DagRunRequestLimit)

    def post(path: str, content) -> httpx.Response:
        async def send():
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client:
                return await client.post(path, content=content)

        return asyncio.run(send())

    return post


def test_a_trigger_within_the_limit_reaches_airflow_whole(client):
    body = b'{"conf": {"tenant_id": "acme"}}'
    response = client("/api/v2/dags/tenant_model_training/dagRuns", content=body)
    assert response.json() == {"received": len(body)}


def test_an_oversized_trigger_is_refused_with_400_naming_the_limit(client):
    response = client("/api/v2/dags/tenant_model_training/dagRuns", content=b"x" * (LIMIT + 1))
    assert response.status_code == 400
    assert f"over {LIMIT} bytes" in response.json()["detail"]
    assert "max_dagrun_request_bytes" in response.json()["detail"]


def test_a_streamed_oversized_trigger_is_refused_too(client):
    async def chunks():
        for _ in range(5):
            yield b"y" * 400

    response = client("/api/v2/dags/d/dagRuns", chunks())
    assert response.status_code == 400


def test_other_endpoints_are_not_limited(client):
    assert client("/api/v2/variables", content=b"z" * (LIMIT * 3)).json() == {"received": LIMIT * 3}


def test_the_plugin_registers_the_middleware_which_reads_the_configured_limit(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CONTROLPLANE__MAX_DAGRUN_REQUEST_BYTES", "4242")
    plugin = importlib.import_module("plugins.request_limits")
    (entry,) = plugin.RequestLimitsPlugin.fastapi_root_middlewares
    assert entry["middleware"] is plugin.DagRunRequestLimit
    assert entry["middleware"](app=None).max_bytes == 4242
