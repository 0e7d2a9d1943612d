"""HTTP API of the inference service.

    POST /api/v1/deploy       {"tenant_id", "version"}: load that version; 404 if it does not exist
    POST /api/v1/cache/warm   {"tenant_id"}: load the tenant's popular-items list from Redis
                              (both need the service's token, services/auth.py: the deploy tasks send it)
    GET  /api/v1/recommend    ?tenant_id=&user_id=&k=: the user's top-k items, never one the user interacted
                              with ("source": "model"); a user the model cannot score (never seen in
                              training) gets popular items, also without seen ones ("source": "popular")
                              ?tenant_id=&item_id=&k=: items similar to the item ("source": "similar");
                              404 when the tenant's model family has no item similarity (popularity)
    GET  /health              loaded versions by tenant; "degraded", with the reasons under "errors",
                              while a tenant failed to load (200 either way: the other tenants are served)
    GET  /metrics             Prometheus metrics
"""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Query
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field

from workers.tenants import TENANT_SLUG

from ..auth import require_token
from ..body_limit import MAX_BODY_BYTES, BodyLimit
from ..http_metrics import instrument
from .models import BrokenModel, ModelRegistry, UnknownModel


class DeployRequest(BaseModel):
    tenant_id: str = Field(pattern=TENANT_SLUG)
    version: str = Field(pattern=r"^m-[0-9a-f]{12}$")


class WarmRequest(BaseModel):
    tenant_id: str = Field(pattern=TENANT_SLUG)


def create_app(registry: ModelRegistry, popular_source, token: str) -> FastAPI:
    """`popular_source(tenant_id)` returns the tenant's cached popular item ids, most popular first;
    `token` guards the routes that change what is served."""
    app = FastAPI(title="inference")
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES["inference"])
    metrics = instrument(app, "inference")
    deploys = Counter("inference_deploys_total", "Model loads by outcome", ["tenant", "outcome"], registry=metrics)
    loaded = Gauge("inference_model_loaded_timestamp_seconds", "When each tenant's model was loaded",
                   ["tenant", "version"], registry=metrics)
    served = Counter("inference_recommendations_total", "Recommendation responses by source",
                     ["tenant", "source"], registry=metrics)

    writer = [Depends(require_token(token))]

    @app.post("/api/v1/deploy", dependencies=writer)
    def deploy(body: DeployRequest) -> dict:
        try:
            model = registry.load(body.tenant_id, body.version)
        except UnknownModel as exc:
            deploys.labels(body.tenant_id, "missing").inc()
            raise HTTPException(404, str(exc)) from None
        except BrokenModel as exc:
            deploys.labels(body.tenant_id, "broken").inc()
            raise HTTPException(422, str(exc)) from None
        deploys.labels(body.tenant_id, "loaded").inc()
        loaded.labels(body.tenant_id, body.version).set_to_current_time()
        return {"tenant_id": model.tenant_id, "version": model.version, "family": model.model.family,
                "items": len(model.item_ids)}

    @app.post("/api/v1/cache/warm", dependencies=writer)
    def warm(body: WarmRequest) -> dict:
        try:
            model = registry.get(body.tenant_id)
        except UnknownModel as exc:
            raise HTTPException(404, str(exc)) from None
        model.popular = popular_source(body.tenant_id)
        return {"tenant_id": body.tenant_id, "popular_items": len(model.popular)}

    @app.get("/api/v1/recommend")
    def recommend(
        tenant_id: str = Query(pattern=TENANT_SLUG),
        user_id: int | None = Query(None, ge=0),
        item_id: int | None = Query(None, ge=0),
        k: int = Query(10, ge=1, le=1000),
    ) -> dict:
        if (user_id is None) == (item_id is None):
            raise HTTPException(422, "give exactly one of user_id and item_id")
        try:
            model = registry.get(tenant_id)
        except UnknownModel as exc:
            raise HTTPException(404, str(exc)) from None
        if user_id is not None:
            items, source = model.for_user(user_id, k)
        else:
            items, source = model.for_item(item_id, k), "similar"
            if items is None and not model.has_item_similarity:
                raise HTTPException(404, f"tenant {tenant_id} is served a {model.model.family} model, which has "
                                         "no similar items; ask by user_id")
            if items is None:
                raise HTTPException(404, f"tenant {tenant_id} has no item {item_id}")
        served.labels(tenant_id, source).inc()
        return {"tenant_id": tenant_id, "version": model.version, "source": source, "items": items}

    @app.get("/health")
    def health() -> dict:
        errors = registry.errors()
        return {"status": "degraded" if errors else "ok", "versions": registry.versions(), "errors": errors}

    return app
