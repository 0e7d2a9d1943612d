"""The tasks of tenant_model_training as plain functions: plain arguments in, JSON-safe results out.

Connections and variables (platform_db, platform_redis, inference_api, pushgateway,
platform_storage_uri) are read through workers.hooks.

train_embeddings runs the model selection (workers/training/selection.py) against the serving version
(the champion) and records its decision on the run's row (migration V009):

  deploy         the selected model goes on: indexed if it has item vectors, deployed, cache warmed
  popularity     too little data to judge a learned model: a popularity model goes on the same way
                 (no index: it has no item vectors), so the tenant is served popular items; status
                 'success', the reason in decision_reason
  keep_champion  the challenger is worse than the serving version: the run ends 'champion_kept', nothing
                 is staged or deployed, the tasks up to the cache warm-up skip (AirflowSkipException) and
                 check_tenant_outcome passes; the comparison is in metrics->'training'->'champion'
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime
from importlib.metadata import version as package_version

import httpx
from airflow.sdk.exceptions import AirflowSkipException

from workers import hooks, storage
from workers.exceptions import DataError, QualityGateError, TransientError
from workers.training import artifacts, cache, deploys, index, runs
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


def _merge(tenant_id: str, dag_run_id: str, metrics: dict) -> None:
    conn = hooks.platform_db()
    try:
        runs.merge_metrics(conn, dag_run_id, tenant_id, metrics)
    finally:
        conn.close()


def validate_training_data(tenant_id: str, dag_run_id: str, limits: dict | None = None) -> dict:
    with _tracked(tenant_id, dag_run_id, "validate_training_data", "data") as metrics:
        _, summary = load_interactions(hooks.platform_storage_root(), tenant_id, DataLimits(**(limits or {})))
        metrics.update(summary)
    return metrics


def _champion(base, tenant_id: str) -> tuple[str | None, object | None, str | None]:
    """(version, model, problem) of the version the tenant's pointer names: the champion to beat.

    A pointer or version that cannot be read is no champion (and a model production could not load
    either); the problem is recorded with the run.
    """
    try:
        found = artifacts.serving_model(base, tenant_id)
    except (artifacts.BrokenArtifact, FileNotFoundError, KeyError, ValueError) as exc:
        log.warning("tenant %s: the serving version cannot be read, so it is not compared: %s", tenant_id, exc)
        return None, None, f"the serving version cannot be read: {exc}"[:1000]
    if found is None:
        return None, None, None
    return found[0], found[1], None


def train_embeddings(tenant_id: str, dag_run_id: str, **select_options) -> dict:
    """Select a model for the tenant's data against the champion; stage it unless the champion is kept.

    The stage's metrics (metrics->'training') and the staged training.json hold the selection's report
    (chosen family and configuration, the search table, test-period figures, the champion comparison),
    its decision and reason. select_options go to selection.select (a budget, for tests).
    """
    from workers.training import selection  # heavy (implicit, scipy): only this task needs it

    with _tracked(tenant_id, dag_run_id, "train_embeddings", "training") as metrics:
        base, key = hooks.platform_storage_root(), artifacts.run_key(dag_run_id)
        arrays, summary = load_interactions(base, tenant_id)
        champion_version, champion, champion_problem = _champion(base, tenant_id)
        started = time.monotonic()
        try:
            outcome = selection.select(arrays, champion, champion_version=champion_version, **select_options)
        except QualityGateError as exc:  # the figures of a model that lost to popularity, next to the failure
            metrics.update(getattr(exc, "report", None) or {}, decision=None, reason=str(exc),
                           train_seconds=round(time.monotonic() - started, 2),
                           data_fingerprint=summary["fingerprint"])
            _merge(tenant_id, dag_run_id, {"training": metrics})
            raise
        report = dict(outcome.report)
        if champion_version and isinstance(report.get("champion"), dict):
            report["champion"] = {**report["champion"], "version": champion_version}
        metrics.update(
            report,
            decision=outcome.decision,
            reason=outcome.reason,
            served={"family": outcome.model.family, "config": outcome.model.config,
                    "has_vectors": bool(outcome.model.has_vectors)},
            serving_version=champion_version,
            train_seconds=round(time.monotonic() - started, 2),
            data_fingerprint=summary["fingerprint"],
        )
        if champion_problem:
            metrics["champion_problem"] = champion_problem
        if outcome.decision != "keep_champion":  # a challenger that lost is not staged: nothing will use it
            artifacts.save_model(base, tenant_id, key, outcome.model)
        storage.write_json(_staged_json(tenant_id, dag_run_id, "training.json"), metrics)
    conn = hooks.platform_db()
    try:
        runs.decide(conn, dag_run_id, tenant_id, outcome.decision, outcome.reason)
    finally:
        conn.close()
    log.info("tenant %s: %s (%s)", tenant_id, outcome.decision, outcome.reason)
    return {"decision": outcome.decision, "reason": outcome.reason, "ndcg_lift": metrics.get("ndcg_lift"),
            "served": metrics["served"], "serving_version": champion_version}


def _skip_if_champion_kept(tenant_id: str, dag_run_id: str, task: str) -> None:
    """Before a stage touches the row (runs.stage would mark it running again): nothing to do once the
    champion was kept. Airflow then skips the tasks below too, up to check_tenant_outcome (all_done)."""
    recorded = _recorded_run(tenant_id, dag_run_id)
    if recorded["status"] == "champion_kept":
        raise AirflowSkipException(f"{task}: the champion was kept, nothing to deploy "
                                   f"({recorded['decision_reason']})")


def build_faiss_index(tenant_id: str, dag_run_id: str) -> dict:
    """The FAISS index of a model with item vectors; a family without them is scored exactly, unindexed."""
    _skip_if_champion_kept(tenant_id, dag_run_id, "build_faiss_index")
    with _tracked(tenant_id, dag_run_id, "build_faiss_index", "index") as metrics:
        base, key = hooks.platform_storage_root(), artifacts.run_key(dag_run_id)
        model = artifacts.load_model(base, tenant_id, key)
        metrics.update(family=model.family, indexed=bool(model.has_vectors))
        if model.has_vectors:
            built, info = index.build_index(model.item_factors, index.queries_for(model))
            artifacts.save_index(base, tenant_id, key, built)
            metrics.update(info)
        else:
            metrics["note"] = f"the {model.family} family has no item vectors: it is scored without an index"
        storage.write_json(_staged_json(tenant_id, dag_run_id, "index.json"), metrics)
    return metrics


def validate_index(tenant_id: str, dag_run_id: str) -> dict:
    _skip_if_champion_kept(tenant_id, dag_run_id, "validate_index")
    with _tracked(tenant_id, dag_run_id, "validate_index", "validation") as metrics:
        base, key = hooks.platform_storage_root(), artifacts.run_key(dag_run_id)
        model = artifacts.load_model(base, tenant_id, key)
        metrics.update(family=model.family, indexed=bool(model.has_vectors))
        if model.has_vectors:
            # Queries drawn apart from the ones nprobe was tuned on.
            queries = index.queries_for(model, seed=97)
            metrics.update(index.validate_index(artifacts.load_index(base, tenant_id, key), model.item_factors,
                                                queries))
        else:
            metrics.update(recall_at_10=None,
                           note=f"no index to validate: the {model.family} family is scored exactly")
        storage.write_json(_staged_json(tenant_id, dag_run_id, "validation.json"), metrics)
    return metrics


def _serve(service: hooks.HttpService, tenant_id: str, version: str, timeout_s: float) -> None:
    """Ask the inference service to load a version and wait until its health reports it."""
    url = service.url
    try:
        response = httpx.post(f"{url}/api/v1/deploy", json={"tenant_id": tenant_id, "version": version},
                              auth=service.auth, verify=service.verify, timeout=60)
    except httpx.HTTPError as exc:
        raise TransientError(f"inference service unreachable at {url}: {exc}") from exc
    if response.status_code >= 500:
        raise TransientError(f"inference service answered {response.status_code}: {response.text[:300]}")
    if response.status_code >= 400:
        raise DataError(f"inference service refused {version}: {response.status_code} {response.text[:300]}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/health", verify=service.verify, timeout=10).json()
        if health.get("versions", {}).get(tenant_id) == version:
            return
        time.sleep(1)
    raise TransientError(f"inference service health does not report {tenant_id} at {version} after {timeout_s}s")


# The selection's report keys that the manifest keeps (the rest is in model_training_runs).
_MANIFEST_TRAINING = ("ndcg_lift", "model", "popularity", "protocol", "champion", "eval_users",
                      "train_interactions", "users", "items", "seconds", "train_seconds")


def _manifest(tenant_id: str, dag_run_id: str, version: str) -> dict:
    """The version's manifest: the data it was trained on, the decision, the chosen family and configuration,
    the search table, the test-period figures, and how it is scored (a FAISS index, or exactly)."""
    training = storage.read_json(_staged_json(tenant_id, dag_run_id, "training.json"))
    index_info = storage.read_json(_staged_json(tenant_id, dag_run_id, "index.json"))
    return {
        "tenant_id": tenant_id,
        "version": version,
        "dag_run_id": dag_run_id,
        "data_fingerprint": training["data_fingerprint"],
        "decision": training["decision"],
        "reason": training["reason"],
        "model": {"family": training["served"]["family"], "config": training["served"]["config"]},
        "scoring": ("faiss index" if index_info.get("indexed")
                    else f"exact, without an index: {index_info.get('note', 'the family has no item vectors')}"),
        "search": training.get("search", []),
        "metrics": {
            "training": {k: training[k] for k in _MANIFEST_TRAINING if k in training},
            "index": index_info,
            "validation": storage.read_json(_staged_json(tenant_id, dag_run_id, "validation.json")),
        },
        "libraries": {name: package_version(name) for name in ("implicit", "faiss-cpu", "numpy", "scipy")},
    }


def deploy_to_production(tenant_id: str, dag_run_id: str, data_interval_end: datetime | None,
                         run_after: datetime | None, health_timeout_s: float = 60) -> dict:
    """Publish the run's version, then deploy it unless production holds a newer run's (workers/training/deploys.py).

    The outcome is "deployed" or "superseded" (a cleared or backfilled older run: production left alone).
    A run that kept the champion skips: it staged nothing, and the serving version stays.
    """
    _skip_if_champion_kept(tenant_id, dag_run_id, "deploy_to_production")
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

    Not for a superseded run: its popular items would replace those of the newer model production serves;
    nor for a run that kept the champion (Airflow skips this task then; a direct call answers the same).
    """
    status = _recorded_run(tenant_id, dag_run_id)["status"]
    if status == "superseded":
        return {"skipped": "superseded: production serves a newer run's model"}
    if status == "champion_kept":
        return {"skipped": "champion kept: production serves the champion's popular items"}
    base, key = hooks.platform_storage_root(), artifacts.run_key(dag_run_id)
    popular = artifacts.load_model(base, tenant_id, key).popular
    client = hooks.redis_client(hooks.REDIS_CONN_ID)
    try:
        written = cache.write_popular(client, tenant_id, popular.tolist())
    finally:
        client.close()
    service = hooks.http_service(hooks.INFERENCE_CONN_ID)
    response = httpx.post(f"{service.url}/api/v1/cache/warm", json={"tenant_id": tenant_id}, auth=service.auth,
                          verify=service.verify, timeout=30)
    response.raise_for_status()
    return {"cached_items": written, "service": response.json()}


_RUN_COLUMNS = ("status", "model_version", "failure_reason", "metrics", "finished_at", "decision",
                "decision_reason")


def _recorded_run(tenant_id: str, dag_run_id: str) -> dict:
    """The run's row (_RUN_COLUMNS; finished_at: now while running); DataError if none."""
    conn = hooks.platform_db()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT status, model_version, failure_reason, metrics, coalesce(finished_at, now()), decision,"
                " decision_reason FROM model_training_runs WHERE dag_run_id = %s AND tenant_id = %s",
                (dag_run_id, tenant_id),
            )
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        raise DataError(f"tenant {tenant_id}: no training run was recorded for {dag_run_id}")
    return dict(zip(_RUN_COLUMNS, row, strict=True))


def tenant_outcome(tenant_id: str, dag_run_id: str) -> dict:
    """The tenant's recorded outcome, pushed to the Pushgateway; DataError (fail, no retry) unless deployed
    or the champion was kept.

    A superseded run passes and pushes nothing: production's model, which the gauges describe, did not change.
    A run that kept the champion passes and pushes that it did not fail, but no deploy (workers/training/metrics.py).
    """
    run = _recorded_run(tenant_id, dag_run_id)
    status, version, metrics = run["status"], run["model_version"], run["metrics"] or {}
    if status == "superseded":
        log.info("tenant %s: %s was superseded by a newer run's model; production unchanged", tenant_id, version)
        return {"tenant_id": tenant_id, "version": version, "outcome": "superseded"}
    kept = status == "champion_kept"
    registry = training_metrics.outcome_registry(status == "success" or kept, run["finished_at"], metrics,
                                                 deployed=status == "success")
    try:
        gateway, handler = hooks.pushgateway()
        training_metrics.push_outcome(gateway, tenant_id, registry, handler)
    except OSError as exc:
        # The outcome is in model_training_runs either way; a missing push shows as TenantTrainingStale.
        log.error("tenant %s: outcome not pushed to the Pushgateway: %s", tenant_id, exc)
    if kept:
        serving = (metrics.get("training") or {}).get("serving_version")
        log.info("tenant %s: the champion %s keeps serving: %s", tenant_id, serving, run["decision_reason"])
        return {"tenant_id": tenant_id, "version": serving, "outcome": "champion_kept",
                "reason": run["decision_reason"]}
    if status != "success":
        raise DataError(f"tenant {tenant_id} was not deployed: {run['failure_reason'] or status}")
    return {"tenant_id": tenant_id, "version": version, "decision": run["decision"], "reason": run["decision_reason"]}
