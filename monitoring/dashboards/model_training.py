"""Model training and index quality, per tenant: freshness, outcome, lift, recall, index shape, serving."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from .panels import graph, label_variable, listing, mean_over_range, prom

UID = "model-training"
TENANT = 'tenant=~"$tenant"'


def build() -> Dashboard:
    return (
        Dashboard("Model training and index quality").uid(UID).tags(["ml", "faiss", "controlplane"]).refresh("1m")
        .time("now-7d", "now")
        .with_variable(label_variable("tenant", "training_last_run_success", "tenant", label_text="Tenant"))
        .with_row(Row("Freshness and outcome"))
        .with_panel(listing("Since the last deployed model",
                            f"time() - training_last_success_timestamp_seconds{{{TENANT}}}", unit="s", width=12))
        .with_panel(listing("Latest run succeeded (1) or failed (0)", f"training_last_run_success{{{TENANT}}}",
                            width=12))
        .with_row(Row("Model quality"))
        .with_panel(graph("nDCG@10 lift over popularity", prom(f"training_ndcg_lift_ratio{{{TENANT}}}", "{{tenant}}"),
                          unit="percentunit",
                          description="On the test period. A model without lift is not deployed; "
                                      "none for a popularity deploy."))
        .with_panel(graph("Index recall@10 vs exact search",
                          prom(f"training_index_recall_at_10{{{TENANT}}}", "{{tenant}}"), unit="percentunit",
                          description="The recall gate rejects an index below 0.95."))
        .with_panel(graph("Index shape", prom(f"training_index_nlist{{{TENANT}}}", "{{tenant}} nlist"),
                          prom(f"training_index_nprobe{{{TENANT}}}", "{{tenant}} nprobe")))
        .with_panel(graph("Items indexed and interactions trained on",
                          prom(f"training_index_items{{{TENANT}}}", "{{tenant}} items"),
                          prom(f"training_interactions{{{TENANT}}}", "{{tenant}} interactions")))
        .with_panel(graph("Training time, model selection included",
                          prom(f"training_seconds{{{TENANT}}}", "{{tenant}}"), unit="s"))
        .with_panel(graph("tenant_model_training run duration (mean)", prom(
            mean_over_range("airflow_dagrun_duration_seconds", "state", 'dag_id="tenant_model_training"'),
            "{{state}}"), unit="s"))
        .with_row(Row("Serving"))
        .with_panel(listing("Model loaded by the inference service",
                            f"inference_model_loaded_timestamp_seconds{{{TENANT}}} * 1000", unit="dateTimeAsIso"))
        .with_panel(graph("Model loads by outcome", prom(
            f"sum by (tenant, outcome) (increase(inference_deploys_total{{{TENANT}}}[$__range]))",
            "{{tenant}} {{outcome}}"), bars=True, width=24))
    )
