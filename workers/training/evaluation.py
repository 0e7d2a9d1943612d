"""The evaluation protocol: a time-ordered train / validation / test split and top-10 ranking metrics.

- Interactions are ordered by time. The test period is the last `test_share` of them (at least
  `min_period_days` long when the data spans enough), the validation period the `val_share` before it;
  the rest is training. Interactions sharing a timestamp stay on one side, so a period can be larger
  than its share when the data has coarse times.
- When either period then has fewer than `min_eval_users` evaluation users (typical of data where each
  user is active in one burst, such as MovieLens), the split falls back to a per-user time-ordered
  holdout: for each user with at least `min_user_interactions`, their own last `test_share` of
  interactions (at least one) is test and the `val_share` before that validation. The report says which
  split was used ("mode": "global" | "per_user").
- A period's evaluation users are the users with history before it who, in the period, interacted with
  items they had not interacted with before and that exist in that history (no model can recommend an
  item it never saw). Their relevant items are those new items. Items seen before the period are
  excluded from the recommendations (the model's `with_seen` with the period's history) and not counted.
- At most `max_eval_users` of them, sampled with a fixed seed; fewer than `min_eval_users` means the
  period is too small to judge a model on.
- Metrics: nDCG@10 (binary relevance, ideal DCG over min(10, relevant)) and recall@10 (hits / min(10,
  relevant)), averaged over users.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from workers.training.served import ServedModel, member, unique, with_seen

K = 10
DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class Protocol:
    val_share: float = 0.10
    test_share: float = 0.10
    min_period_days: float = 0.0   # each period at least this long, when the data spans enough
    min_eval_users: int = 100
    max_eval_users: int = 3000
    min_user_interactions: int = 5   # per-user fallback: users with fewer stay in training
    seed: int = 0


@dataclass
class Period:
    """One judged period: its users, their new relevant items, and what they saw before it."""
    name: str
    users: np.ndarray            # int64 raw user ids (sorted sample)
    truth: list[np.ndarray]      # per user, raw ids of the relevant (new) items
    history_users: np.ndarray    # the sampled users' interactions before the period (raw ids)
    history_items: np.ndarray
    eligible_users: int          # before sampling
    interactions: int            # in the period

    def sample(self, n: int, seed: int = 0) -> Period:
        """A fixed-seed subset of at most n users (for a cheaper search)."""
        if len(self.users) <= n:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self.users), n, replace=False))
        mask = member(self.history_users, self.users[keep])
        return replace(self, users=self.users[keep], truth=[self.truth[i] for i in keep],
                       history_users=self.history_users[mask], history_items=self.history_items[mask])


@dataclass
class Split:
    train: np.ndarray        # bool masks over the interactions
    validation: np.ndarray
    test: np.ndarray
    val: Period
    tst: Period
    mode: str = "global"

    def summary(self) -> dict:
        return {
            "mode": self.mode,
            "train_interactions": int(self.train.sum()),
            "validation_interactions": int(self.validation.sum()),
            "test_interactions": int(self.test.sum()),
            "validation_users": len(self.val.users), "validation_eligible_users": self.val.eligible_users,
            "test_users": len(self.tst.users), "test_eligible_users": self.tst.eligible_users,
        }


def _period_start(times: np.ndarray, end_mask: np.ndarray, share: float, min_days: float) -> int:
    """The first timestamp of a period holding the last `share` of all interactions among `end_mask`."""
    remaining = np.sort(times[end_mask])
    count = max(1, math.ceil(share * len(times)))
    start = int(remaining[max(0, len(remaining) - count)])
    if min_days:
        start = min(start, int(remaining[-1] - min_days * DAY_US))
    return start


def period(arrays: dict, history: np.ndarray, target: np.ndarray, name: str, protocol: Protocol) -> Period:
    """The evaluation users of the `target` interactions given the `history` interactions (masks)."""
    users, items = arrays["user_id"], arrays["item_id"]
    hu, hi = users[history].astype(np.int64), items[history].astype(np.int64)
    tu, ti = users[target].astype(np.int64), items[target].astype(np.int64)
    history_users, item_ids = unique(hu), unique(hi)
    known = member(tu, history_users) & member(ti, item_ids)
    tu, ti = tu[known], ti[known]
    # new to the user: the (user, item) pair is not in the history
    width = np.int64(len(item_ids))
    seen_keys = unique(hu * width + np.searchsorted(item_ids, hi))
    keys = unique(tu * width + np.searchsorted(item_ids, ti))
    keys = keys[~member(keys, seen_keys)]
    pair_users, pair_items = keys // width, item_ids[keys % width]
    eligible, starts = np.unique(pair_users, return_index=True)
    chosen = eligible
    if len(eligible) > protocol.max_eval_users:
        rng = np.random.default_rng(protocol.seed)
        chosen = np.sort(rng.choice(eligible, protocol.max_eval_users, replace=False))
    bounds = np.append(starts, len(pair_users))
    rows = np.searchsorted(eligible, chosen)
    truth = [pair_items[bounds[r]:bounds[r + 1]] for r in rows]
    mask = member(hu, chosen)
    return Period(name, chosen, truth, hu[mask], hi[mask], len(eligible), int(target.sum()))


def _global_masks(arrays: dict, protocol: Protocol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times = arrays["occurred_at_us"]
    everything = np.ones(len(times), dtype=bool)
    test_start = _period_start(times, everything, protocol.test_share, protocol.min_period_days)
    test = times >= test_start
    validation = np.zeros(len(times), dtype=bool)
    if (~test).any():
        val_start = _period_start(times, ~test, protocol.val_share, protocol.min_period_days)
        validation = (times >= val_start) & ~test
    return ~(test | validation), validation, test


def _per_user_masks(arrays: dict, protocol: Protocol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's own last interactions by time (ties by row order) as test, those before as validation."""
    users, times = arrays["user_id"], arrays["occurred_at_us"]
    order = np.lexsort((np.arange(len(users)), times, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    rank_from_end = np.repeat(starts + counts, counts) - np.arange(len(users)) - 1  # 0 = the user's last
    n_test = np.maximum(1, np.round(protocol.test_share * counts)).astype(np.int64)
    n_val = np.maximum(1, np.round(protocol.val_share * counts)).astype(np.int64)
    eligible = counts >= protocol.min_user_interactions
    n_test, n_val = np.where(eligible, n_test, 0), np.where(eligible, n_val, 0)
    per_row_test, per_row_val = np.repeat(n_test, counts), np.repeat(n_val, counts)
    test, validation = np.zeros(len(users), dtype=bool), np.zeros(len(users), dtype=bool)
    test[order] = rank_from_end < per_row_test
    validation[order] = (rank_from_end >= per_row_test) & (rank_from_end < per_row_test + per_row_val)
    return ~(test | validation), validation, test


def split(arrays: dict, protocol: Protocol = Protocol()) -> Split:
    """The global time split, or the per-user one when the global one has too few evaluation users."""
    result = None
    for mode, masks in (("global", _global_masks), ("per_user", _per_user_masks)):
        train, validation, test = masks(arrays, protocol)
        candidate = Split(train, validation, test,
                          period(arrays, train, validation, "validation", protocol),
                          period(arrays, train | validation, test, "test", protocol), mode)
        if result is None or min(candidate.val.eligible_users, candidate.tst.eligible_users) > min(
                result.val.eligible_users, result.tst.eligible_users):
            result = candidate
        if min(result.val.eligible_users, result.tst.eligible_users) >= protocol.min_eval_users:
            break
    return result


def ranking_metrics(recommended: np.ndarray, truth: list[np.ndarray], k: int = K) -> dict:
    per_user = per_user_ndcg(recommended, truth, k)
    recall = [np.isin(recs[:k], rel).sum() / min(k, len(rel)) for recs, rel in zip(recommended, truth, strict=True)]
    return {"ndcg_at_10": float(per_user.mean()) if len(per_user) else 0.0,
            "recall_at_10": float(np.mean(recall)) if recall else 0.0}


def per_user_ndcg(recommended: np.ndarray, truth: list[np.ndarray], k: int = K) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.empty(len(truth))
    for row, (recs, rel) in enumerate(zip(recommended, truth, strict=True)):
        hits = np.isin(recs[:k], rel) & (recs[:k] >= 0)
        out[row] = (hits * discounts[:len(hits)]).sum() / discounts[:min(k, len(rel))].sum()
    return out


def recommend_for(model: ServedModel, part: Period, k: int = K) -> np.ndarray:
    """The model's top-k for the period's users, items seen before the period excluded."""
    judged = with_seen(model, part.history_users, part.history_items)
    return judged.recommend_batch(part.users, k)


def evaluate(model: ServedModel, part: Period, k: int = K) -> dict:
    """nDCG@10 and recall@10 of any served model on a period (raw ids; seen items excluded)."""
    return ranking_metrics(recommend_for(model, part, k), part.truth, k)
