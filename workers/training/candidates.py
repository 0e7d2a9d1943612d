"""Model families fitted on a set of interactions, each returned as a ServedModel.

- "als": `implicit` ALS on confidence-weighted interactions (weighting none / bm25 / tfidf), scored by
  user . item factors; FAISS-indexable.
- "item_knn": `implicit` item-item nearest neighbours (cosine or BM25), its top-K similarity rows are the
  served neighbour lists; a user's score for an item is the sum of its similarities to the user's items.
- "ease": EASE (Steck 2019), closed form on the binary user x item matrix; only for catalogues of at most
  EASE_MAX_ITEMS items (a dense items x items inverse). Its weight rows are pruned to the top
  `neighbours` per item, and that pruned model is what is evaluated and served.
- "popularity": the most interacted-with items.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from workers.training.served import ServedModel, unique

EASE_MAX_ITEMS = 3000


@dataclass
class Interactions:
    """Interactions as a user x item matrix of summed weights, with the raw ids of its rows and columns."""
    user_ids: np.ndarray
    item_ids: np.ndarray
    matrix: object   # scipy.sparse.csr_matrix float32 (users x items)
    popular: np.ndarray  # raw item ids, most interacted-with first
    seen: tuple      # (user_ids, seen_indptr, seen_items) of these interactions

    @property
    def users(self) -> int:
        return len(self.user_ids)

    @property
    def items(self) -> int:
        return len(self.item_ids)


def interactions(arrays: dict, mask: np.ndarray | None = None) -> Interactions:
    import scipy.sparse as sp

    users = arrays["user_id"] if mask is None else arrays["user_id"][mask]
    items = arrays["item_id"] if mask is None else arrays["item_id"][mask]
    weights = arrays["weight"] if mask is None else arrays["weight"][mask]
    user_ids, user_index = np.unique(users.astype(np.int64), return_inverse=True)
    item_ids, item_index = np.unique(items.astype(np.int64), return_inverse=True)
    weights = np.maximum(np.asarray(weights, dtype=np.float32), 0.0)
    matrix = sp.csr_matrix((weights, (user_index, item_index)), shape=(len(user_ids), len(item_ids)))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    counts = np.bincount(item_index, minlength=len(item_ids))
    popular = item_ids[np.argsort(-counts, kind="stable")]
    # seen = every interaction, including zero-weight ones
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    key = unique(user_index.astype(np.int64) * len(item_ids) + item_index)
    np.cumsum(np.bincount(key // len(item_ids), minlength=len(user_ids)), out=indptr[1:])
    seen = (user_ids, indptr, (key % len(item_ids)).astype(np.int32))
    return Interactions(user_ids, item_ids, matrix, popular, seen)


def _base(data: Interactions) -> dict:
    user_ids, indptr, seen = data.seen
    return {"item_ids": data.item_ids, "popular": data.popular, "user_ids": user_ids,
            "seen_indptr": indptr, "seen_items": seen}


def _limits(threads: int | None):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(threads or 1, "blas")


def popularity(data: Interactions) -> ServedModel:
    return ServedModel("popularity", {}, **_base(data))


def _weighted(matrix, weighting: str):
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    if weighting == "bm25":
        return bm25_weight(matrix.T, K1=100, B=0.8).T.tocsr().astype(np.float32)
    if weighting == "tfidf":
        return tfidf_weight(matrix.T).T.tocsr().astype(np.float32)
    if weighting == "binary":
        out = matrix.copy()
        out.data[:] = 1.0
        return out
    if weighting == "none":
        return matrix.copy()  # callers change .data: never the shared matrix
    raise ValueError(f"unknown weighting {weighting!r}")


def als(data: Interactions, factors: int = 64, regularization: float = 0.1, alpha: float = 10.0,
        iterations: int = 12, weighting: str = "none", seed: int = 0, threads: int | None = None) -> ServedModel:
    """implicit ALS; confidence = 1 + alpha * weighted interaction / its mean."""
    from implicit.cpu.als import AlternatingLeastSquares

    config = {"factors": factors, "regularization": regularization, "alpha": alpha,
              "iterations": iterations, "weighting": weighting}
    confidence = _weighted(data.matrix, weighting)
    # Scaled to a mean of 1, so alpha means the same for counts, ratings and BM25 / TF-IDF weights.
    values = np.maximum(confidence.data, 0.0)
    values = values / values.mean() if len(values) and values.mean() > 0 else values
    confidence.data = (1.0 + alpha * values).astype(np.float32)
    from implicit.recommender_base import ModelFitError

    with _limits(None):  # implicit parallelises itself; nested BLAS threads only contend
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=1.0,
                                        iterations=iterations, random_state=seed,
                                        calculate_training_loss=False, num_threads=threads or 0)
        try:
            model.fit(confidence, show_progress=False)
        except ModelFitError as exc:  # NaN factors: this configuration does not fit these data
            raise ValueError(f"ALS {config} failed to fit: {exc}") from None
    return ServedModel("als", config, **_base(data),
                       user_factors=np.ascontiguousarray(model.user_factors, dtype=np.float32),
                       item_factors=np.ascontiguousarray(model.item_factors, dtype=np.float32))


def _neighbour_csr(similarity, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of an items x items similarity, without the diagonal, the `top` largest per row."""
    import scipy.sparse as sp

    sim = sp.csr_matrix(similarity, dtype=np.float32)
    sim.setdiag(0)
    sim.eliminate_zeros()
    sim.sort_indices()
    indptr, items, scores = [0], [], []
    for row in range(sim.shape[0]):
        lo, hi = sim.indptr[row], sim.indptr[row + 1]
        cols, vals = sim.indices[lo:hi], sim.data[lo:hi]
        if len(vals) > top:
            keep = np.argpartition(-vals, top - 1)[:top]
            cols, vals = cols[keep], vals[keep]
        order = np.argsort(-vals, kind="stable")
        items.append(cols[order])
        scores.append(vals[order])
        indptr.append(indptr[-1] + len(order))
    return (np.asarray(indptr, dtype=np.int64),
            np.concatenate(items).astype(np.int32) if items else np.empty(0, np.int32),
            np.concatenate(scores).astype(np.float32) if scores else np.empty(0, np.float32))


def item_knn(data: Interactions, neighbours: int = 100, similarity: str = "cosine",
             threads: int | None = None) -> ServedModel:
    """implicit item-item nearest neighbours (cosine on interaction weights, or BM25)."""
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    config = {"neighbours": neighbours, "similarity": similarity}
    recommender = (BM25Recommender(K=neighbours + 1, num_threads=threads or 0) if similarity == "bm25"
                   else CosineRecommender(K=neighbours + 1, num_threads=threads or 0))
    matrix = data.matrix if similarity != "cosine_binary" else _weighted(data.matrix, "binary")
    with _limits(None), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit: "expects CSR input", after transposing our CSR itself
        recommender.fit(matrix.tocsr(), show_progress=False)
    indptr, items, scores = _neighbour_csr(recommender.similarity, neighbours)
    return ServedModel("item_knn", config, **_base(data), neighbour_indptr=indptr,
                       neighbour_items=items, neighbour_scores=scores)


def ease(data: Interactions, regularization: float = 200.0, neighbours: int = 100,
         threads: int | None = None) -> ServedModel:
    """EASE on the binary matrix, pruned to the `neighbours` largest weights per item."""
    if data.items > EASE_MAX_ITEMS:
        raise ValueError(f"EASE needs a dense {data.items}x{data.items} matrix; at most {EASE_MAX_ITEMS} items")
    binary = _weighted(data.matrix, "binary")
    with _limits(threads or 2):
        gram = (binary.T @ binary).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += regularization
        precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    weights[weights <= 0] = 0.0  # served scores sum the kept (positive) weights of the user's items
    indptr, items, scores = _neighbour_csr(weights, neighbours)
    return ServedModel("ease", {"regularization": regularization, "neighbours": neighbours}, **_base(data),
                       neighbour_indptr=indptr, neighbour_items=items, neighbour_scores=scores)


def fit(family: str, data: Interactions, config: dict, threads: int | None = None) -> ServedModel:
    """Fit one family with a config (as recorded in a ServedModel's config)."""
    if family == "als":
        return als(data, threads=threads, **config)
    if family == "item_knn":
        return item_knn(data, threads=threads, **config)
    if family == "ease":
        return ease(data, threads=threads, **config)
    if family == "popularity":
        return popularity(data)
    raise ValueError(f"unknown family {family!r}")


def fold_in(model: ServedModel) -> ServedModel:
    """ALS factors for the users with seen items but an all-zero factor row (users new since the fit).

    The user half of an ALS step with the item factors fixed, on the user's seen items with binary
    confidence 1 + alpha: x_u = (Y'Y + sum_i alpha y_i y_i' + reg I)^-1 sum_i (1 + alpha) y_i.
    """
    if model.family != "als" or model.user_factors is None or model.item_factors is None:
        return model
    counts = np.diff(model.seen_indptr)
    todo = np.flatnonzero((counts > 0) & ~np.any(model.user_factors, axis=1))
    if not len(todo):
        return model
    y = model.item_factors.astype(np.float64)
    alpha = float(model.config.get("alpha", 1.0))
    base = y.T @ y + float(model.config.get("regularization", 0.1)) * np.eye(y.shape[1])
    user_factors = model.user_factors.copy()
    for row in todo:
        items = y[model.seen_items[model.seen_indptr[row]:model.seen_indptr[row + 1]]]
        user_factors[row] = np.linalg.solve(base + alpha * items.T @ items, (1 + alpha) * items.sum(axis=0))
    return replace(model, user_factors=user_factors.astype(np.float32))
