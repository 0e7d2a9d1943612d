"""Request metrics and a /metrics route for the reference services' FastAPI apps."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


def instrument(app: FastAPI, prefix: str) -> CollectorRegistry:
    """Count and time every request as <prefix>_requests_total and <prefix>_request_seconds, by route.

    Returns the registry, for the service's own metrics; GET /metrics serves it.
    """
    registry = CollectorRegistry()
    requests = Counter(f"{prefix}_requests_total", "Requests by endpoint and status", ["endpoint", "status"],
                       registry=registry)
    latency = Histogram(f"{prefix}_request_seconds", "Request latency", ["endpoint"], registry=registry)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        # The route's template, not the path: one series per endpoint, whatever the ids in it.
        endpoint = request.scope.get("route").path if request.scope.get("route") else "unmatched"
        requests.labels(endpoint, str(response.status_code)).inc()
        latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return registry
