"""A small run's artifacts staged in storage, as train_embeddings, build_faiss_index and validate_index
leave them: for the tests that publish, deploy or serve a version."""

from tests.unit.services.served_versions import factor_model, stage
from workers import storage
from workers.training import artifacts
from workers.training.served import ServedModel


def stage_run(base, tenant_id: str, dag_run_id: str, seed: int = 0,
              model: ServedModel | None = None, decision: str = "deploy") -> ServedModel:
    """Stage a model (an ALS-like factor model by default) with the stage reports the manifest is made of."""
    model = model or factor_model(seed)
    stage(base, tenant_id, dag_run_id, model)
    staged = storage.staging_dir(base, tenant_id, artifacts.run_key(dag_run_id))
    storage.write_json(staged / "training.json", {
        "data_fingerprint": f"fp-{seed}", "decision": decision, "reason": "a test's model",
        "served": {"family": model.family, "config": model.config, "has_vectors": model.has_vectors},
        "model": {"ndcg_at_10": 0.3}, "popularity": {"ndcg_at_10": 0.2}, "ndcg_lift": 0.5,
        "search": [{"family": model.family, "config": model.config, "ndcg_at_10": 0.3, "seconds": 0.1}]})
    if model.has_vectors:
        storage.write_json(staged / "index.json", {"items": len(model.item_ids), "indexed": True})
        storage.write_json(staged / "validation.json", {"recall_at_10": 0.99, "indexed": True})
    else:
        storage.write_json(staged / "index.json", {"indexed": False, "note": "no item vectors"})
        storage.write_json(staged / "validation.json", {"indexed": False, "recall_at_10": None})
    return model


def publish_version(base, tenant_id: str, dag_run_id: str, seed: int = 0) -> str:
    """Stage a run and publish it; returns its version."""
    stage_run(base, tenant_id, dag_run_id, seed)
    version = artifacts.version_for(dag_run_id, tenant_id)
    artifacts.publish(base, tenant_id, artifacts.run_key(dag_run_id), version, {"data_fingerprint": f"fp-{seed}"})
    return version
