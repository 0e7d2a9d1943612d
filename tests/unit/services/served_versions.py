"""Small ServedModels of each family, staged and published as a training run leaves them: for the tests that
persist, deploy or serve a version (tests/unit/services, tests/unit/workers/training/test_artifacts.py)."""

import numpy as np

from workers import storage
from workers.training import artifacts
from workers.training.index import build_index
from workers.training.served import ServedModel

ITEMS = np.arange(1, 101, dtype=np.int64)  # raw item ids 1..100
USERS = np.arange(1, 51, dtype=np.int64)  # raw user ids 1..50
POPULAR = ITEMS[::-1].copy()  # item 100 most popular


def seen_structure(seen: dict[int, list[int]]) -> dict:
    """user_ids/seen_indptr/seen_items for USERS from {raw user: [raw items]}."""
    indptr, positions = [0], []
    for user in USERS:
        positions += [int(np.searchsorted(ITEMS, item)) for item in seen.get(int(user), [])]
        indptr.append(len(positions))
    return {"user_ids": USERS.copy(), "seen_indptr": np.array(indptr, dtype=np.int64),
            "seen_items": np.array(positions, dtype=np.int32)}


def factor_model(seed: int = 0, seen: dict[int, list[int]] | None = None, family: str = "als") -> ServedModel:
    rng = np.random.default_rng(seed)
    return ServedModel(family=family, config={"factors": 8}, item_ids=ITEMS.copy(), popular=POPULAR.copy(),
                       **seen_structure(seen or {}),
                       user_factors=rng.standard_normal((len(USERS), 8)).astype(np.float32),
                       item_factors=rng.standard_normal((len(ITEMS), 8)).astype(np.float32))


def neighbour_model(seen: dict[int, list[int]] | None = None) -> ServedModel:
    """item_knn: item at position p has neighbours p+1..p+5 (wrapping), scores 5..1."""
    n = len(ITEMS)
    neighbours = np.array([[(p + j) % n for j in range(1, 6)] for p in range(n)], dtype=np.int32)
    return ServedModel(family="item_knn", config={"K": 5}, item_ids=ITEMS.copy(), popular=POPULAR.copy(),
                       **seen_structure(seen or {}),
                       neighbour_indptr=np.arange(0, 5 * n + 1, 5, dtype=np.int64),
                       neighbour_items=neighbours.ravel(),
                       neighbour_scores=np.tile(np.arange(5, 0, -1, dtype=np.float32), n))


def popularity_model(seen: dict[int, list[int]] | None = None) -> ServedModel:
    return ServedModel(family="popularity", config={}, item_ids=ITEMS.copy(), popular=POPULAR.copy(),
                       **seen_structure(seen or {}))


def stage(base, tenant_id: str, dag_run_id: str, model: ServedModel, index: bool = True) -> str:
    """Stage the model (and, for a family with item vectors, its index) under the run's key; returns the key."""
    key = artifacts.run_key(dag_run_id)
    artifacts.save_model(base, tenant_id, key, model)
    if index and model.has_vectors:
        artifacts.save_index(base, tenant_id, key, build_index(model.item_factors, model.user_factors)[0])
    return key


def publish(base, tenant_id: str, dag_run_id: str, model: ServedModel, index: bool = True,
            fingerprint: str = "fp-0") -> str:
    """Stage and publish the model; returns its version."""
    key = stage(base, tenant_id, dag_run_id, model, index)
    version = artifacts.version_for(dag_run_id, tenant_id)
    artifacts.publish(base, tenant_id, key, version, {"data_fingerprint": fingerprint})
    return version


def publish_version(base, tenant_id: str, dag_run_id: str, seed: int = 0) -> str:
    """A factor model with an index, published; returns its version."""
    return publish(base, tenant_id, dag_run_id, factor_model(seed), fingerprint=f"fp-{seed}")


def staged_files(base, tenant_id: str, version: str) -> list[str]:
    return sorted(p.name for p in (storage.models_dir(base, tenant_id) / version).iterdir())
