"""Every FastAPI service refuses a request body over its limit with 413, however the body is sent."""

import json
import socket

import httpx
import pytest
from fastapi import FastAPI, Request

from services.body_limit import MAX_BODY_BYTES, BodyLimit
from services.freshpoc.app import create_app as freshpoc_app
from services.freshpoc.faults import Faults
from services.freshpoc.stages import Context
from services.http_metrics import instrument
from services.inference.app import create_app as inference_app
from services.inference.models import ModelRegistry
from services.oncall_inbox.app import create_app as oncall_inbox_app
from tests.local_server import serving
from workers import storage

LIMIT = 1000


@pytest.fixture(scope="module")
def echo():
    """A FastAPI app like the services' (instrumented), limited to LIMIT bytes, that reports what it read."""
    app = FastAPI()
    app.add_middleware(BodyLimit, max_bytes=LIMIT)
    instrument(app, "echo")

    @app.post("/echo")
    async def echo_body(request: Request) -> dict:
        return {"received": len(await request.body())}

    with serving(app) as client:
        yield client


def chunks(count: int, size: int):
    """A body without a Content-Length: httpx sends it with Transfer-Encoding: chunked."""
    for _ in range(count):
        yield b"y" * size


def refused(response: httpx.Response, limit: int) -> bool:
    return response.status_code == 413 and f"limit of {limit} bytes" in response.json()["detail"]


def test_a_body_within_the_limit_reaches_the_app_whole(echo):
    assert echo.post("/echo", content=b"x" * LIMIT).json() == {"received": LIMIT}


def test_a_chunked_body_within_the_limit_reaches_the_app_whole(echo):
    response = echo.post("/echo", content=chunks(4, 250))
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.json() == {"received": LIMIT}


def test_a_content_length_over_the_limit_is_refused_with_413_naming_the_limit(echo):
    response = echo.post("/echo", content=b"x" * (LIMIT + 1))
    assert refused(response, LIMIT), response.text


def test_a_declared_content_length_over_the_limit_is_refused_before_the_body_arrives(echo):
    """A client that declares 1 GB and sends 10 bytes gets 413 at once: the body is never awaited."""
    with socket.create_connection((echo.base_url.host, echo.base_url.port), timeout=5) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: echo\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n" + b"x" * 10)
        answer = b""
        while chunk := sock.recv(4096):  # the server closes the connection after the 413
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert f"limit of {LIMIT} bytes".encode() in answer


def test_a_chunked_body_over_the_limit_is_refused_too(echo):
    response = echo.post("/echo", content=chunks(5, 250))
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert refused(response, LIMIT), response.text


def test_a_refusal_is_counted_in_the_metrics(echo):
    echo.post("/echo", content=b"x" * (LIMIT + 1))
    assert 'echo_requests_total{endpoint="unmatched",status="413"}' in echo.get("/metrics").text


def test_requests_without_a_body_pass(echo):
    assert echo.get("/metrics").status_code == 200


@pytest.fixture
def inference(tmp_path):
    return inference_app(ModelRegistry(storage.root(f"file://{tmp_path}/objects")), lambda tenant_id: [], "token")


@pytest.fixture
def freshpoc(tmp_path):
    return freshpoc_app("ingestion", Context(base=storage.root(f"file://{tmp_path}/objects"), connect_db=None),
                        Faults(), "token", "token")


@pytest.fixture
def oncall_inbox(tmp_path):
    return oncall_inbox_app(tmp_path / "inbox.jsonl", "token")


# Each service's largest real request, and how the app answers it once it gets past the limit.
@pytest.mark.parametrize(("service", "path", "real_body", "answer"), [
    ("inference", "/api/v1/deploy", {"tenant_id": "a" * 63, "version": "m-0123456789ab"}, 404),  # no model
    ("freshpoc", "/api/v1/jobs", {"run_key": "r1", "repository": "é" * 2000}, 422),  # not a repository
    ("oncall_inbox", "/webhook", {"alerts": [{"labels": {"alertname": "A", "n": str(n)}, "annotations": {
        "summary": "s" * 500, "description": "d" * 500}} for n in range(400)]}, 200),  # 400 alerts, 440 KB
], ids=["inference", "freshpoc", "oncall_inbox"])
def test_every_service_is_limited_and_its_largest_real_request_passes(request, service, path, real_body, answer):
    """The service refuses one byte over its limit, chunked too; its largest real request gets past."""
    limit = MAX_BODY_BYTES[service]
    with serving(request.getfixturevalue(service)) as client:
        assert refused(client.post(path, content=b"{" * (limit + 1)), limit)
        assert refused(client.post(path, content=chunks(2, limit // 2 + 1)), limit)
        # json.dumps escapes every non-ASCII character as \uXXXX: the largest encoding of the body.
        response = client.post(path, content=json.dumps(real_body), headers={
            "Idempotency-Key": "k1", "Content-Type": "application/json", "Authorization": "Bearer token"})
        assert response.status_code == answer, response.text
