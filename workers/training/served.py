"""The one form of a trained model: what evaluation scores, what is persisted and what the service serves.

A model is a few numpy arrays on raw ids (no storage, no Airflow):
- the catalogue it can recommend (`item_ids`, sorted) and training-period popularity (`popular`, raw ids);
- per user, the items already interacted with, as a compact CSR (`user_ids`, `seen_indptr`, `seen_items`),
  which are never recommended back;
- the family's scoring data: factors (ALS: score = user . item) or an item -> neighbours CSR (item-kNN,
  EASE: score = sum over the user's seen items of their neighbours' similarities).
Evaluation scores exactly this object, so what is judged is what is served.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

FAMILIES = ("als", "item_knn", "ease", "popularity")
ARRAYS: tuple[str, ...] = (
    "item_ids", "popular", "user_ids", "seen_indptr", "seen_items",
    "user_factors", "item_factors", "neighbour_indptr", "neighbour_items", "neighbour_scores",
)
_BATCH_CELLS = 8_000_000  # dense scores computed at once by recommend_batch (users x items)


def unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a sort: faster than numpy 2's hash-based np.unique on large int arrays)."""
    values = np.sort(np.asarray(values), kind="stable")
    if len(values) < 2:
        return values
    return values[np.r_[True, values[1:] != values[:-1]]]


def member(values: np.ndarray, sorted_unique: np.ndarray) -> np.ndarray:
    """np.isin(values, sorted_unique) for a sorted distinct array, by binary search."""
    return _lookup_many(sorted_unique, np.asarray(values)) >= 0


def _lookup(sorted_ids: np.ndarray, value: int) -> int:
    """Position of `value` in `sorted_ids`, or -1."""
    pos = int(np.searchsorted(sorted_ids, value))
    return pos if pos < len(sorted_ids) and sorted_ids[pos] == value else -1


def _lookup_many(sorted_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_ids, values)
    found = pos < len(sorted_ids)
    found[found] = sorted_ids[pos[found]] == values[found]
    return np.where(found, pos, -1)


def build_seen(item_ids: np.ndarray, user_ids_raw: np.ndarray, item_ids_raw: np.ndarray,
               users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user_ids, seen_indptr, seen_items) from interactions on raw ids; items outside `item_ids` dropped.

    `users` (sorted) adds users that keep an empty row; the result's user_ids is their union with the
    interacting users.
    """
    user_ids_raw = np.asarray(user_ids_raw, dtype=np.int64)
    item_ids_raw = np.asarray(item_ids_raw, dtype=np.int64)
    user_ids = unique(user_ids_raw)
    if users is not None and len(users):
        user_ids = unique(np.concatenate([user_ids, np.asarray(users, dtype=np.int64)]))
    item_pos = _lookup_many(item_ids, item_ids_raw)
    keep = item_pos >= 0
    user_pos = np.searchsorted(user_ids, user_ids_raw[keep])
    key = unique(user_pos.astype(np.int64) * max(len(item_ids), 1) + item_pos[keep])
    rows = key // max(len(item_ids), 1)
    indptr = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(user_ids)), out=indptr[1:])
    return user_ids, indptr, (key % max(len(item_ids), 1)).astype(np.int32)


@dataclass
class ServedModel:
    family: str
    config: dict
    item_ids: np.ndarray
    popular: np.ndarray
    user_ids: np.ndarray
    seen_indptr: np.ndarray
    seen_items: np.ndarray
    user_factors: np.ndarray | None = None
    item_factors: np.ndarray | None = None
    neighbour_indptr: np.ndarray | None = None
    neighbour_items: np.ndarray | None = None
    neighbour_scores: np.ndarray | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; expected one of {FAMILIES}")

    @property
    def has_vectors(self) -> bool:
        return self.item_factors is not None

    @property
    def has_neighbours(self) -> bool:
        return self.neighbour_indptr is not None

    # -- the pieces ------------------------------------------------------------------------------

    def _user_row(self, user_id: int) -> int:
        return _lookup(self.user_ids, int(user_id))

    def _seen(self, row: int) -> np.ndarray:
        if row < 0:
            return np.empty(0, dtype=np.int32)
        return self.seen_items[self.seen_indptr[row]:self.seen_indptr[row + 1]]

    def seen_item_ids(self, user_id: int) -> np.ndarray:
        """The raw ids of the items the user interacted with (empty for a user the model never saw)."""
        return self.item_ids[self._seen(self._user_row(user_id))]

    def _popular_unseen(self, seen_raw: set, k: int, also: set = frozenset()) -> list[int]:
        out = []
        for item in self.popular:
            item = int(item)
            if item not in seen_raw and item not in also:
                out.append(item)
                if len(out) == k:
                    break
        return out

    def _neighbour_scores(self, seen: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top-k candidate positions (not seen, ranked) and their scores for a user who saw `seen`."""
        starts, ends = self.neighbour_indptr[seen], self.neighbour_indptr[seen + 1]
        lengths = ends - starts
        if not lengths.sum():
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        entries = np.arange(lengths.sum()) + offsets
        items = self.neighbour_items[entries]
        n = len(self.item_ids)
        scores = np.bincount(items, weights=self.neighbour_scores[entries], minlength=n)
        touched = np.zeros(n, dtype=bool)
        touched[items] = True
        touched[seen] = False
        candidates = np.flatnonzero(touched)
        values = scores[candidates]
        if len(candidates) > k:  # the k best (ties at the k-th kept whole, so the order below is stable)
            kth = -np.partition(-values, k - 1)[k - 1]
            keep = values >= kth
            candidates, values = candidates[keep], values[keep]
        order = np.argsort(-values, kind="stable")[:k]
        return candidates[order], values[order]

    def _factor_top(self, row: int, seen: np.ndarray, k: int, index=None) -> tuple[np.ndarray, np.ndarray]:
        vector = self.user_factors[row]
        if index is not None:
            want = min(k + len(seen), len(self.item_ids))
            scores, found = index.search(vector.reshape(1, -1).astype(np.float32), want)
            scores, found = scores[0], found[0]
            keep = found >= 0
            if len(seen):
                keep &= ~np.isin(found, seen)  # short arrays
            return found[keep][:k].astype(np.int64), scores[keep][:k]
        scores = self.item_factors @ vector
        scores[seen] = -np.inf
        k_eff = min(k, len(scores) - len(seen))
        if k_eff <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        top = np.argpartition(-scores, k_eff - 1)[:k_eff]
        top = top[np.argsort(-scores[top], kind="stable")]
        return top.astype(np.int64), scores[top]

    # -- the public interface --------------------------------------------------------------------

    def recommend(self, user_id: int, k: int, index=None) -> tuple[list[dict], str]:
        """Top-k items for a user, never one the user has seen: (items, "model" | "popular")."""
        row = self._user_row(user_id)
        seen = self._seen(row)
        positions = scores = None
        if row >= 0 and self.family != "popularity":
            if self.user_factors is not None and self.item_factors is not None:
                if np.any(self.user_factors[row]):
                    positions, scores = self._factor_top(row, seen, k, index)
            elif self.has_neighbours and len(seen):
                positions, scores = self._neighbour_scores(seen, k)
        seen_raw = set(self.item_ids[seen].tolist())
        if positions is None or not len(positions):
            return [{"item_id": i, "score": None} for i in self._popular_unseen(seen_raw, k)], "popular"
        items = [{"item_id": int(self.item_ids[p]), "score": float(s)} for p, s in zip(positions, scores, strict=True)]
        if len(items) < k:
            chosen = {it["item_id"] for it in items}
            items += [{"item_id": i, "score": None} for i in self._popular_unseen(seen_raw, k - len(items), chosen)]
        return items, "model"

    def recommend_batch(self, user_ids: np.ndarray, k: int) -> np.ndarray:
        """(n, k) raw item ids, -1 padded: exact scoring, the same rules as recommend (for evaluation)."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        rows = _lookup_many(self.user_ids, user_ids)
        model_rows = np.zeros(len(user_ids), dtype=bool)
        if self.family != "popularity" and self.user_factors is not None and self.item_factors is not None:
            model_rows = rows >= 0
            model_rows[model_rows] = np.any(self.user_factors[rows[model_rows]], axis=1)
            self._factor_batch(np.flatnonzero(model_rows), rows, k, out)
        elif self.family != "popularity" and self.has_neighbours:
            model_rows = rows >= 0
            self._neighbour_batch(np.flatnonzero(model_rows), rows, k, out)
        for i in range(len(user_ids)):  # popular for the rest, and fill short model lists
            filled = int((out[i] >= 0).sum())
            if filled == k:
                continue
            seen_raw = set(self.item_ids[self._seen(int(rows[i]))].tolist())
            extra = self._popular_unseen(seen_raw, k - filled, set(out[i, :filled].tolist()))
            out[i, filled:filled + len(extra)] = extra
        return out

    def _factor_batch(self, which: np.ndarray, rows: np.ndarray, k: int, out: np.ndarray) -> None:
        n_items = len(self.item_ids)
        chunk = max(1, _BATCH_CELLS // max(n_items, 1))
        for start in range(0, len(which), chunk):
            part = which[start:start + chunk]
            urows = rows[part]
            scores = self.user_factors[urows] @ self.item_factors.T
            lengths = self.seen_indptr[urows + 1] - self.seen_indptr[urows]
            if lengths.sum():
                r = np.repeat(np.arange(len(part)), lengths)
                c = np.concatenate([self._seen(int(u)) for u in urows])
                scores[r, c] = -np.inf
            k_eff = min(k, n_items)
            top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            valid = np.isfinite(np.take_along_axis(top_scores, order, axis=1))
            ids = np.where(valid, self.item_ids[top], -1)
            for j, i in enumerate(part):  # keep valid ones first (invalid only when the user saw almost all)
                got = ids[j][ids[j] >= 0]
                out[i, :len(got)] = got

    def _neighbour_batch(self, which: np.ndarray, rows: np.ndarray, k: int, out: np.ndarray) -> None:
        for i in which:
            seen = self._seen(int(rows[i]))
            if not len(seen):
                continue
            positions, _ = self._neighbour_scores(seen, k)
            got = self.item_ids[positions]
            out[i, :len(got)] = got

    def similar_items(self, item_id: int, k: int, index=None) -> list[dict] | None:
        """Items most like `item_id` (itself excluded); None when unknown or the family has no similarity."""
        pos = _lookup(self.item_ids, int(item_id))
        if pos < 0 or self.family == "popularity":
            return None
        if self.item_factors is not None:
            vector = self.item_factors[pos]
            if index is not None:
                scores, found = index.search(vector.reshape(1, -1).astype(np.float32), k + 1)
                pairs = [(int(f), float(s)) for f, s in zip(found[0], scores[0], strict=True) if f >= 0 and f != pos]
            else:
                scores = self.item_factors @ vector
                scores[pos] = -np.inf
                k_eff = min(k, len(scores) - 1)
                if k_eff <= 0:
                    return []
                top = np.argpartition(-scores, k_eff - 1)[:k_eff]
                top = top[np.argsort(-scores[top], kind="stable")]
                pairs = [(int(t), float(scores[t])) for t in top]
        elif self.has_neighbours:
            lo, hi = self.neighbour_indptr[pos], self.neighbour_indptr[pos + 1]
            items, scores = self.neighbour_items[lo:hi], self.neighbour_scores[lo:hi]
            order = np.argsort(-scores, kind="stable")
            pairs = [(int(items[o]), float(scores[o])) for o in order if items[o] != pos]
        else:
            return None
        return [{"item_id": int(self.item_ids[p]), "score": s} for p, s in pairs[:k]]


def with_seen(model: ServedModel, user_ids_raw: np.ndarray, item_ids_raw: np.ndarray) -> ServedModel:
    """A copy whose seen structure is rebuilt from these interactions (raw ids).

    Users already in the model keep their factor rows (with an empty seen row if absent here); users new
    to it get zero factor rows, so they are served popular items minus what they saw.
    """
    user_ids, indptr, items = build_seen(model.item_ids, user_ids_raw, item_ids_raw, users=model.user_ids)
    user_factors = model.user_factors
    if user_factors is not None:
        user_factors = np.zeros((len(user_ids), user_factors.shape[1]), dtype=np.float32)
        if len(model.user_ids):
            user_factors[np.searchsorted(user_ids, model.user_ids)] = model.user_factors
    return replace(model, user_ids=user_ids, seen_indptr=indptr, seen_items=items, user_factors=user_factors)


def arrays_of(model: ServedModel) -> dict[str, np.ndarray]:
    """The non-None arrays by name (what persistence writes)."""
    return {name: getattr(model, name) for name in ARRAYS if getattr(model, name) is not None}


assert set(ARRAYS) == {f.name for f in fields(ServedModel)} - {"family", "config"}
