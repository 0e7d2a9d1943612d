"""Implicit-feedback embeddings with `implicit` ALS, judged on a time-based holdout against popularity."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from workers.exceptions import DataError, QualityGateError

K = 10


@dataclass(frozen=True)
class AlsParams:
    factors: int = 64
    regularization: float = 0.1
    iterations: int = 12
    alpha: float = 10.0         # confidence = 1 + alpha * summed interaction weight
    holdout_days: float = 7.0   # the last days of data are the test period
    eval_users: int = 2000
    seed: int = 0


@dataclass
class Embeddings:
    user_ids: np.ndarray
    user_factors: np.ndarray
    item_ids: np.ndarray
    item_factors: np.ndarray
    popular_item_ids: np.ndarray  # training-period popularity, most popular first


def _split(arrays: dict, holdout_days: float) -> tuple[np.ndarray, np.ndarray]:
    cutoff = arrays["occurred_at_us"].max() - int(holdout_days * 86400 * 1e6)
    train = arrays["occurred_at_us"] <= cutoff
    if train.all() or not train.any():
        raise DataError(f"the data spans less than the {holdout_days}-day holdout plus a training period")
    return train, ~train


def _ranking_metrics(recommended: np.ndarray, truth: list[set[int]]) -> dict[str, float]:
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    recall, ndcg = [], []
    for recs, relevant in zip(recommended, truth, strict=True):
        hits = np.array([item in relevant for item in recs[:K]], dtype=float)
        ideal = discounts[: min(K, len(relevant))].sum()
        recall.append(hits.sum() / min(K, len(relevant)))
        ndcg.append((hits * discounts[: len(hits)]).sum() / ideal)
    return {"recall_at_10": float(np.mean(recall)), "ndcg_at_10": float(np.mean(ndcg))}


def _popular_for(users_seen: list[set[int]], popular: np.ndarray) -> np.ndarray:
    recs = np.empty((len(users_seen), K), dtype=np.int64)
    for row, seen in enumerate(users_seen):
        recs[row] = [i for i in popular[: K + len(seen)] if i not in seen][:K]
    return recs


def train_and_evaluate(arrays: dict, params: AlsParams = AlsParams()) -> tuple[Embeddings, dict]:
    """Fit ALS on the training period and compare it with popularity on the holdout.

    Raises QualityGateError when ALS does not beat popularity on nDCG@10.
    """
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    train, test = _split(arrays, params.holdout_days)
    user_ids, user_index = np.unique(arrays["user_id"][train], return_inverse=True)
    item_ids, item_index = np.unique(arrays["item_id"][train], return_inverse=True)
    user_items = sp.csr_matrix(
        (arrays["weight"][train].astype(np.float32), (user_index, item_index)),
        shape=(len(user_ids), len(item_ids)),
    )
    user_items.sum_duplicates()
    confidence = user_items.copy()
    confidence.data = 1.0 + params.alpha * confidence.data

    with threadpool_limits(1, "blas"):  # implicit parallelises itself; nested BLAS threads only contend
        model = AlternatingLeastSquares(
            factors=params.factors, regularization=params.regularization, iterations=params.iterations,
            random_state=params.seed, calculate_training_loss=False,
        )
        model.fit(confidence, show_progress=False)

    popular = np.asarray(user_items.getnnz(axis=0)).argsort(kind="stable")[::-1]
    # Holdout users: active in both periods, judged on items new to them.
    test_u = np.searchsorted(user_ids, arrays["user_id"][test])
    test_i = np.searchsorted(item_ids, arrays["item_id"][test])
    known = (test_u < len(user_ids)) & (test_i < len(item_ids))
    known &= user_ids[np.minimum(test_u, len(user_ids) - 1)] == arrays["user_id"][test]
    known &= item_ids[np.minimum(test_i, len(item_ids) - 1)] == arrays["item_id"][test]
    truth: dict[int, set[int]] = {}
    for u, i in zip(test_u[known], test_i[known], strict=True):
        if user_items[u, i] == 0:
            truth.setdefault(int(u), set()).add(int(i))
    if not truth:
        raise DataError("no holdout interactions by training-period users: nothing to evaluate on")
    rng = np.random.default_rng(params.seed)
    users = np.array(sorted(truth))
    users = rng.choice(users, min(params.eval_users, len(users)), replace=False)
    relevant = [truth[int(u)] for u in users]

    als_recs, _ = model.recommend(users, user_items[users], N=K, filter_already_liked_items=True)
    seen = [set(user_items[u].indices.tolist()) for u in users]
    als = _ranking_metrics(als_recs, relevant)
    pop = _ranking_metrics(_popular_for(seen, popular), relevant)
    metrics = {
        "als": als,
        "popularity": pop,
        "ndcg_lift": als["ndcg_at_10"] / pop["ndcg_at_10"] - 1 if pop["ndcg_at_10"] else None,
        "eval_users": len(users),
        "train_interactions": int(train.sum()),
        "users": len(user_ids),
        "items": len(item_ids),
        "params": asdict(params),
    }
    if als["ndcg_at_10"] <= pop["ndcg_at_10"]:
        raise QualityGateError(
            f"ALS nDCG@10 {als['ndcg_at_10']:.4f} does not beat popularity {pop['ndcg_at_10']:.4f}; not deploying"
        )
    embeddings = Embeddings(
        user_ids=user_ids, user_factors=np.ascontiguousarray(model.user_factors, dtype=np.float32),
        item_ids=item_ids, item_factors=np.ascontiguousarray(model.item_factors, dtype=np.float32),
        popular_item_ids=item_ids[popular],
    )
    return embeddings, metrics
