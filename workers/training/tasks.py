"""The tasks of tenant_model_training as plain functions: plain arguments in, JSON-safe results out.

Connections and variables (platform_db, platform_redis, inference_api, pushgateway,
platform_storage_uri) are read through workers.hooks.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime
from importlib.metadata import version as package_version

import httpx

from workers import hooks, storage
from workers.exceptions import DataError, TransientError
from workers.training import als, artifacts, cache, deploys, index, runs
from workers.training import metrics as training_metrics
from workers.training.data import DataLimits, load_interactions

log = logging.getLogger(__name__)


def _staged_json(tenant_id: str, dag_run_id: str, name: str):
    return storage.staging_dir(hooks.platform_storage_root(), tenant_id, artifacts.run_key(dag_run_id)) / name


@contextmanager
def _tracked(tenant_id: str, dag_run_id: str, stage: str, metrics_key: str):
    """Run one stage against model_training_runs: failures recorded, the stage's metrics merged.

    The body fills the yielded dict with the stage's metrics.
    """
    conn = hooks.platform_db()
    try:
        if stage == "validate_training_data":
            runs.start(conn, dag_run_id, tenant_id)
        metrics: dict = {}
        with runs.stage(conn, dag_run_id, tenant_id, stage):
            yield metrics
        runs.merge_metrics(conn, dag_run_id, tenant_id, {metrics_key: metrics})
    finally:
        conn.close()


def validate_training_data(tenant_id: str, dag_run_id: str, limits: dict | None = None) -> dict:
    with _tracked(tenant_id, dag_run_id, "validate_training_data", "data") as metrics:
        _, summary = load_interactions(hooks.platform_storage_root(), tenant_id, DataLimits(**(limits or {})))
        metrics.update(summary)
    return metrics


def train_embeddings(tenant_id: str, dag_run_id: str, params: dict | None = None) -> dict:
    with _tracked(tenant_id, dag_run_id, "train_embeddings", "training") as metrics:
        base = hooks.platform_storage_root()
        arrays, summary = load_interactions(base, tenant_id)
        started = time.monotonic()
        embeddings, found = als.train_and_evaluate(arrays, als.AlsParams(**(params or {})))
        metrics.update(found, train_seconds=round(time.monotonic() - started, 2),
                       data_fingerprint=summary["fingerprint"])
        artifacts.save_embeddings(base, tenant_id, artifacts.run_key(dag_run_id), embeddings)
        storage.write_json(_staged_json(tenant_id, dag_run_id, "training.json"), metrics)
    return {key: metrics[key] for key in ("ndcg_lift", "als", "popularity")}


def build_faiss_index(tenant_id: str, dag_run_id: str) -> dict:
    with _tracked(tenant_id, dag_run_id, "build_faiss_index", "index") as metrics:
        base, key = hooks.platform_storage_root(), artifacts.run_key(dag_run_id)
        embeddings = artifacts.load_embeddings(base, tenant_id, key)
        built, info = index.build_index(embeddings.item_factors, index.sample_queries(embeddings.user_factors))
        artifacts.save_index(base, tenant_id, key, built)
        metrics.update(info)
        storage.write_json(_staged_json(tenant_id, dag_run_id, "index.json"), metrics)
    return metrics


def validate_index(tenant_id: str, dag_run_id: str) -> dict:
    with _tracked(tenant_id, dag_run_id, "validate_index", "validation") as metrics:
        base, key = hooks.platform_storage_root(), artifacts.run_key(dag_run_id)
        embeddings = artifacts.load_embeddings(base, tenant_id, key)
        # Queries drawn apart from the ones nprobe was tuned on.
        queries = index.sample_queries(embeddings.user_factors, seed=97)
        metrics.update(index.validate_index(artifacts.load_index(base, tenant_id, key), embeddings.item_factors,
                                            queries))
        storage.write_json(_staged_json(tenant_id, dag_run_id, "validation.json"), metrics)
    return metrics


def _serve(service: tuple[str, tuple[str, str] | None], tenant_id: str, version: str, timeout_s: float) -> None:
    """Ask the inference service (base URL, auth) to load a version and wait until its health reports it."""
    url, auth = service
    try:
        response = httpx.post(f"{url}/api/v1/deploy", json={"tenant_id": tenant_id, "version": version},
                              auth=auth, timeout=60)
    except httpx.HTTPError as exc:
        raise TransientError(f"inference service unreachable at {url}: {exc}") from exc
    if response.status_code >= 500:
        raise TransientError(f"inference service answered {response.status_code}: {response.text[:300]}")
    if response.status_code >= 400:
        raise DataError(f"inference service refused {version}: {response.status_code} {response.text[:300]}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/health", timeout=10).json()
        if health.get("versions", {}).get(tenant_id) == version:
            return
        time.sleep(1)
    raise TransientError(f"inference service health does not report {tenant_id} at {version} after {timeout_s}s")


def _manifest(tenant_id: str, dag_run_id: str, version: str) -> dict:
    training = storage.read_json(_staged_json(tenant_id, dag_run_id, "training.json"))
    return {
        "tenant_id": tenant_id,
        "version": version,
        "dag_run_id": dag_run_id,
        "data_fingerprint": training["data_fingerprint"],
        "params": training["params"],
        "metrics": {
            "training": {k: training[k] for k in ("als", "popularity", "ndcg_lift")},
            "index": storage.read_json(_staged_json(tenant_id, dag_run_id, "index.json")),
            "validation": storage.read_json(_staged_json(tenant_id, dag_run_id, "validation.json")),
        },
        "libraries": {name: package_version(name) for name in ("implicit", "faiss-cpu", "numpy")},
    }


def deploy_to_production(tenant_id: str, dag_run_id: str, data_interval_end: datetime | None,
                         run_after: datetime | None, health_timeout_s: float = 60) -> dict:
    """Publish the run's version, then deploy it unless production holds a newer run's (workers/training/deploys.py).

    The outcome is "deployed" or "superseded" (a cleared or backfilled older run: production left alone).
    """
    conn = hooks.platform_db()
    try:
        with runs.stage(conn, dag_run_id, tenant_id, "deploy_to_production"):
            base = hooks.platform_storage_root()
            version = artifacts.version_for(dag_run_id, tenant_id)
            published = artifacts.publish(base, tenant_id, artifacts.run_key(dag_run_id), version,
                                          _manifest(tenant_id, dag_run_id, version))
            service = hooks.http_service(hooks.INFERENCE_CONN_ID)
            candidate = deploys.Deploy(tenant_id, dag_run_id, version,
                                       deploys.deploy_order(data_interval_end, run_after))
            result = deploys.deploy(conn, base, candidate, lambda v: _serve(service, tenant_id, v, health_timeout_s))
        return {**result, "published": published}
    finally:
        conn.close()


def update_redis_cache(tenant_id: str, dag_run_id: str) -> dict:
    """Non-critical: the tenant's popular items into Redis (TTL), then the service warms its copy.

    Not for a superseded run: its popular items would replace those of the newer model production serves.
    """
    if _recorded_run(tenant_id, dag_run_id)[0] == "superseded":
        return {"skipped": "superseded: production serves a newer run's model"}
    base, key = hooks.platform_storage_root(), artifacts.run_key(dag_run_id)
    popular = artifacts.load_embeddings(base, tenant_id, key).popular_item_ids
    client = hooks.redis_client(hooks.REDIS_CONN_ID)
    try:
        written = cache.write_popular(client, tenant_id, popular.tolist())
    finally:
        client.close()
    url, auth = hooks.http_service(hooks.INFERENCE_CONN_ID)
    response = httpx.post(f"{url}/api/v1/cache/warm", json={"tenant_id": tenant_id}, auth=auth, timeout=30)
    response.raise_for_status()
    return {"cached_items": written, "service": response.json()}


def _recorded_run(tenant_id: str, dag_run_id: str) -> tuple:
    """(status, model_version, failure_reason, metrics, finished_at or now) of the run's row; DataError if none."""
    conn = hooks.platform_db()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT status, model_version, failure_reason, metrics, coalesce(finished_at, now())"
                " FROM model_training_runs WHERE dag_run_id = %s AND tenant_id = %s",
                (dag_run_id, tenant_id),
            )
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        raise DataError(f"tenant {tenant_id}: no training run was recorded for {dag_run_id}")
    return row


def tenant_outcome(tenant_id: str, dag_run_id: str) -> dict:
    """The tenant's recorded outcome, pushed to the Pushgateway; DataError (fail, no retry) unless deployed.

    A superseded run passes and pushes nothing: production's model, which the gauges describe, did not change.
    """
    status, version, reason, metrics, finished_at = _recorded_run(tenant_id, dag_run_id)
    if status == "superseded":
        log.info("tenant %s: %s was superseded by a newer run's model; production unchanged", tenant_id, version)
        return {"tenant_id": tenant_id, "version": version, "outcome": "superseded"}
    registry = training_metrics.outcome_registry(status == "success", finished_at, metrics or {})
    try:
        gateway, handler = hooks.pushgateway()
        training_metrics.push_outcome(gateway, tenant_id, registry, handler)
    except OSError as exc:
        # The outcome is in model_training_runs either way; a missing push shows as TenantTrainingStale.
        log.error("tenant %s: outcome not pushed to the Pushgateway: %s", tenant_id, exc)
    if status != "success":
        raise DataError(f"tenant {tenant_id} was not deployed: {reason or status}")
    return {"tenant_id": tenant_id, "version": version}
