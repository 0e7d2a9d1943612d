"""The api-server plugin that refuses oversized DAG-run triggers and backfills, on a small Starlette app."""

from __future__ import annotations

import asyncio
import importlib
import typing

import httpx
import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
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
                            Route("/api/v2/backfills", echo, methods=["POST"]),
                            Route("/api/v2/backfills/dry_run", echo, methods=["POST"]),
                            Route("/api/v2/assets/{asset_id}/materialize", echo, methods=["POST"]),
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


BACKFILL_PATHS = ["/api/v2/backfills", "/api/v2/backfills/dry_run"]


@pytest.mark.parametrize("path", BACKFILL_PATHS, ids=["create", "dry-run"])
def test_an_oversized_backfill_is_refused_with_400_naming_the_limit(client, path):
    """A backfill copies its dag_run_conf into every run it creates."""
    body = b'{"dag_id": "d", "dag_run_conf": {"padding": "' + b"x" * LIMIT + b'"}}'
    response = client(path, content=body)
    assert response.status_code == 400
    assert response.json()["detail"] == (f"the backfill request is over {LIMIT} bytes "
                                          "([controlplane] max_dagrun_request_bytes); send less conf")


@pytest.mark.parametrize("path", BACKFILL_PATHS, ids=["create", "dry-run"])
def test_a_streamed_oversized_backfill_is_refused_too(client, path):
    async def chunks():
        for _ in range(5):
            yield b"y" * 400

    assert client(path, chunks()).status_code == 400


@pytest.mark.parametrize("path", BACKFILL_PATHS, ids=["create", "dry-run"])
def test_a_backfill_within_the_limit_reaches_airflow_whole(client, path):
    body = b'{"dag_id": "d", "from_date": "2026-01-01T00:00:00Z", "to_date": "2026-01-02T00:00:00Z", ' \
           b'"dag_run_conf": {"tenant_id": "acme"}}'
    assert client(path, content=body).json() == {"received": len(body)}


def test_an_oversized_asset_materialization_is_refused_too(client):
    """Materializing an asset triggers its DAG with the body's conf."""
    response = client("/api/v2/assets/7/materialize", content=b"x" * (LIMIT + 1))
    assert response.status_code == 400
    assert "the asset materialization request is over" in response.json()["detail"]


def _has_conf(annotation, seen: set) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return False
        seen.add(annotation)
        return any(name in ("conf", "dag_run_conf") or _has_conf(field.annotation, seen)
                   for name, field in annotation.model_fields.items())
    return any(_has_conf(arg, seen) for arg in typing.get_args(annotation))


def test_every_airflow_route_whose_body_holds_a_dag_run_conf_is_limited_and_only_those():
    """Read from Airflow's own routers, so an upgrade that adds such a route fails here."""
    from airflow.api_fastapi.core_api.routes.public import public_router
    from airflow.api_fastapi.core_api.routes.ui import ui_router

    plugin = importlib.import_module("plugins.request_limits")
    taking_conf = {
        route.path.replace("{dag_id}", "d").replace("{asset_id}", "7")
        for router in (public_router, ui_router) for route in router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods
        and any(_has_conf(param.field_info.annotation, set()) for param in route.dependant.body_params)
    }
    assert taking_conf == {"/api/v2/dags/d/dagRuns", "/api/v2/backfills", "/api/v2/backfills/dry_run",
                           "/api/v2/assets/7/materialize"}
    for path in taking_conf:
        assert plugin._limited({"type": "http", "method": "POST", "path": path}), path
    for pattern, _ in plugin.LIMITED:
        assert any(pattern.match(path) for path in taking_conf), pattern.pattern


def test_other_endpoints_are_not_limited(client):
    assert client("/api/v2/variables", content=b"z" * (LIMIT * 3)).json() == {"received": LIMIT * 3}


def test_the_plugin_registers_the_middleware_which_reads_the_configured_limit(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CONTROLPLANE__MAX_DAGRUN_REQUEST_BYTES", "4242")
    plugin = importlib.import_module("plugins.request_limits")
    (entry,) = plugin.RequestLimitsPlugin.fastapi_root_middlewares
    assert entry["middleware"] is plugin.DagRunRequestLimit
    assert entry["middleware"](app=None).max_bytes == 4242
