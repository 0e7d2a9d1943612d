"""A small run's artifacts staged in storage, as train_embeddings, build_faiss_index and validate_index
leave them: for the tests that publish, deploy or serve a version."""

import numpy as np

from workers import storage
from workers.training import artifacts
from workers.training.als import Embeddings
from workers.training.index import build_index


def stage_run(base, tenant_id: str, dag_run_id: str, seed: int = 0) -> Embeddings:
    rng = np.random.default_rng(seed)
    embeddings = Embeddings(
        user_ids=np.arange(1, 51), user_factors=rng.standard_normal((50, 8)).astype("float32"),
        item_ids=np.arange(1, 101), item_factors=rng.standard_normal((100, 8)).astype("float32"),
        popular_item_ids=np.arange(100, 0, -1),
    )
    key = artifacts.run_key(dag_run_id)
    artifacts.save_embeddings(base, tenant_id, key, embeddings)
    artifacts.save_index(base, tenant_id, key, build_index(embeddings.item_factors, embeddings.user_factors)[0])
    staged = storage.staging_dir(base, tenant_id, key)
    storage.write_json(staged / "training.json", {"data_fingerprint": f"fp-{seed}", "params": {}, "als": 0.3,
                                                  "popularity": 0.2, "ndcg_lift": 0.5})
    storage.write_json(staged / "index.json", {"items": 100})
    storage.write_json(staged / "validation.json", {"recall_at_10": 0.99})
    return embeddings


def publish_version(base, tenant_id: str, dag_run_id: str, seed: int = 0) -> str:
    """Stage a run and publish it; returns its version."""
    stage_run(base, tenant_id, dag_run_id, seed)
    version = artifacts.version_for(dag_run_id, tenant_id)
    artifacts.publish(base, tenant_id, artifacts.run_key(dag_run_id), version, {"data_fingerprint": f"fp-{seed}"})
    return version
