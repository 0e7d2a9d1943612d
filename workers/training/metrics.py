"""A tenant's training outcome as gauges on the Pushgateway, for the alert rules and dashboards.

Each tenant is its own Pushgateway group (job tenant_model_training, tenant=<id>), and the push
replaces only the metrics it carries: a failed run updates the outcome but keeps the last
success's timestamp and quality figures, which TenantTrainingStale needs.

A run that kept the champion (the challenger was worse) did not fail, so training_last_run_success is 1,
but it deployed nothing: the last deploy's timestamp and quality figures stay those of the model serving.
A quality figure a run does not have (the lift of a popularity model, the index of a family without item
vectors) is left out, not pushed as zero.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway
from prometheus_client.exposition import default_handler

JOB = "tenant_model_training"

# Quality figures of a deployed model: (gauge, stage in model_training_runs.metrics, key, help).
QUALITY = (
    ("training_ndcg_lift_ratio", "training", "ndcg_lift",
     "nDCG@10 lift of the selected model over popularity on the test period (0.5 = +50%)"),
    ("training_seconds", "training", "train_seconds", "Training time, model selection included"),
    ("training_interactions", "data", "interactions", "Interactions the model was trained on"),
    ("training_index_items", "index", "items", "Items in the FAISS index"),
    ("training_index_nlist", "index", "nlist", "IVF lists (0: a flat index)"),
    ("training_index_nprobe", "index", "nprobe", "Lists probed per search, tuned to the recall target"),
    ("training_index_recall_at_10", "validation", "recall_at_10", "Recall@10 of the index against exact search"),
)


def outcome_registry(succeeded: bool, finished_at: datetime, metrics: dict,
                     deployed: bool | None = None) -> CollectorRegistry:
    """succeeded: the run did not fail; deployed (default: succeeded): it put a model into production."""
    deployed = succeeded if deployed is None else deployed
    registry = CollectorRegistry()
    Gauge("training_last_run_success",
          "1 when the tenant's latest training run deployed a model or kept a better champion, 0 when it failed",
          registry=registry).set(1 if succeeded else 0)
    Gauge("training_last_run_timestamp_seconds", "When the tenant's latest training run ended",
          registry=registry).set(finished_at.timestamp())
    if deployed:
        Gauge("training_last_success_timestamp_seconds", "When a model was last deployed for the tenant",
              registry=registry).set(finished_at.timestamp())
        for name, stage, key, description in QUALITY:
            value = (metrics.get(stage) or {}).get(key)
            if value is not None:
                Gauge(name, description, registry=registry).set(float(value))
    return registry


def push_outcome(gateway: str, tenant_id: str, registry: CollectorRegistry, handler=default_handler) -> None:
    """handler: a prometheus_client push handler, which sends the Pushgateway's basic auth over its TLS
    (workers.hooks.pushgateway)."""
    pushadd_to_gateway(gateway, job=JOB, grouping_key={"tenant": tenant_id}, registry=registry, timeout=10,
                       handler=handler)
