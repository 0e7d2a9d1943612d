"""A FAISS index over item embeddings, chosen by catalogue size, tuned and gated on recall.

Following FAISS's guidelines: an exact `Flat` index for small catalogues; above that,
`IVF{K},Flat` with K between 4*sqrt(N) and 16*sqrt(N) (here 8*sqrt(N): shorter lists, so the
probes that reach the recall target scan fewer vectors) and at least 39 training points
per centroid (below that FAISS warns and the clustering is poor). Scores are inner
products, as ALS scores are. nprobe is the smallest that reaches the target on tuning queries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workers.exceptions import DataError, QualityGateError

MIN_POINTS_PER_CENTROID = 39
RECALL_TARGET = 0.95
TUNING_MARGIN = 0.01  # tuned on other queries than the gate's: leave room for their variance
K = 10


@dataclass(frozen=True)
class IndexChoice:
    factory: str
    nlist: int  # 0 for Flat


def choose_index(n_items: int, min_ivf_items: int = 20_000) -> IndexChoice:
    if n_items < min_ivf_items:
        return IndexChoice("Flat", 0)
    nlist = int(8 * math.sqrt(n_items))
    nlist = min(nlist, n_items // MIN_POINTS_PER_CENTROID)
    return IndexChoice(f"IVF{nlist},Flat", nlist)


def _exact(vectors: np.ndarray):
    import faiss

    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    return exact


def recall_at_k(index, exact, queries: np.ndarray, k: int = K, tolerance: float = 1e-5) -> float:
    """Recall of `index` against exact search, counting ties by score.

    A returned item counts as a hit when its true score reaches the exact k-th best score,
    so an index that returns a different item with an equal score is not penalised.
    """
    exact_scores, _ = exact.search(queries, k)
    _, found = index.search(queries, k)
    threshold = exact_scores[:, -1:] - tolerance * np.maximum(1.0, np.abs(exact_scores[:, -1:]))
    vectors = exact.reconstruct_n(0, exact.ntotal)
    valid = found >= 0
    true_scores = np.einsum("qd,qkd->qk", queries, vectors[np.where(valid, found, 0)])
    hits = (true_scores >= threshold) & valid
    return float(hits.sum() / (len(queries) * k))


def build_index(item_factors: np.ndarray, queries: np.ndarray, seed: int = 0):
    """Build the index for the catalogue and tune nprobe to the smallest value meeting the target.

    Returns (index, info). `queries` (user embeddings) are what nprobe is tuned on.
    """
    import faiss

    vectors = np.ascontiguousarray(item_factors, dtype=np.float32)
    n, dim = vectors.shape
    if n == 0:
        raise DataError("no item embeddings to index")
    choice = choose_index(n)
    index = faiss.index_factory(dim, choice.factory, faiss.METRIC_INNER_PRODUCT)
    # A flat index has no lists: nprobe 0 unless IVF tuning below sets it.
    info = {"factory": choice.factory, "nlist": choice.nlist, "nprobe": 0, "items": n, "dim": dim}
    if choice.nlist:
        rng = np.random.default_rng(seed)
        train_size = min(n, 256 * choice.nlist)
        index.train(vectors[rng.choice(n, train_size, replace=False)])
        info["train_points"] = train_size
    index.add(vectors)
    if choice.nlist:
        info.update(_tune_nprobe(index, _exact(vectors), queries, choice.nlist))
    return index, info


def _tune_nprobe(index, exact, queries: np.ndarray, nlist: int) -> dict:
    """Smallest nprobe whose recall clears the target with a margin: doubling, then bisection."""
    goal = RECALL_TARGET + TUNING_MARGIN

    def recall(nprobe: int) -> float:
        index.nprobe = nprobe
        return recall_at_k(index, exact, queries)

    low, high = 0, 1
    while high < nlist and recall(high) < goal:
        low, high = high, min(nlist, high * 2)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if recall(middle) >= goal else (middle, high)
    return {"nprobe": high, "tuning_recall": recall(high)}


def validate_index(index, item_factors: np.ndarray, queries: np.ndarray, target: float = RECALL_TARGET) -> dict:
    """Recall@10 against exact search on sampled queries; QualityGateError below the target."""
    recall = recall_at_k(index, _exact(np.ascontiguousarray(item_factors, dtype=np.float32)), queries)
    if recall < target:
        raise QualityGateError(f"index recall@10 {recall:.3f} is below the {target} gate; not deploying")
    return {"recall_at_10": recall, "queries": len(queries)}


def sample_queries(user_factors: np.ndarray, count: int = 1000, seed: int = 0) -> np.ndarray:
    """Up to `count` user vectors to search with. All-zero rows (users the model did not fit, served popular
    items: workers/training/served.py) are left out: every item ties for them, so any answer is a hit."""
    fitted = np.flatnonzero(np.any(user_factors != 0, axis=1))
    rng = np.random.default_rng(seed + 1)
    rows = rng.choice(fitted, min(count, len(fitted)), replace=False)
    return np.ascontiguousarray(user_factors[rows], dtype=np.float32)


def queries_for(model, count: int = 1000, seed: int = 0) -> np.ndarray:
    """Queries for a model with item vectors (served.ServedModel.has_vectors): its fitted users' vectors,
    or its item vectors when it has no fitted user (item-to-item search is served from the same index)."""
    queries = sample_queries(model.user_factors, count, seed) if model.user_factors is not None else None
    if queries is None or not len(queries):
        queries = sample_queries(model.item_factors, count, seed)
    return queries
