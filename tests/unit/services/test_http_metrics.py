"""Request metrics of the reference services: one series per route template and status."""

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from services.http_metrics import instrument


def test_requests_are_counted_by_route_template_and_status():
    app = FastAPI()
    instrument(app, "demo")

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict:
        if item_id == 0:
            raise HTTPException(404, "no such item")
        return {"id": item_id}

    client = TestClient(app)
    for item_id in (1, 2, 0):
        client.get(f"/items/{item_id}")
    client.get("/nowhere")
    text = client.get("/metrics").text
    assert 'demo_requests_total{endpoint="/items/{item_id}",status="200"} 2.0' in text
    assert 'demo_requests_total{endpoint="/items/{item_id}",status="404"} 1.0' in text
    assert 'demo_requests_total{endpoint="unmatched",status="404"} 1.0' in text
    assert 'demo_request_seconds_count{endpoint="/items/{item_id}"} 3.0' in text
