"""Per-tenant model selection on the validation period, judged once on the test period.

1. Split the interactions (workers.training.evaluation): train / validation / test by time.
2. Too little to judge (fewer than the protocol's minimum evaluation users in validation or test, or
   fewer than MIN_TRAIN_INTERACTIONS training interactions): decision "popularity", with the reason.
3. Search: fit each candidate of a small fixed, ordered list on train and score it on (a fixed-seed
   sample of) the validation users, until the time budget is spent (the first candidate always runs).
4. Refit the best on train + validation; judge it once on the test period against popularity
   (QualityGateError when it does not beat it).
5. Champion: the serving version is scored on the same test users. When it was trained on the test
   period (more than CHAMPION_LEAK_MAX of the test's relevant pairs are among its seen items), scoring
   its artifact would flatter it, so its family and configuration are refitted on train + validation
   instead, and the report says so. The challenger deploys unless its test nDCG@10 is below
   champion * (1 - TOLERANCE).
6. The returned model's seen items are all the interactions. A deployed ALS model also gets factors for the
   users who appeared after its fit (the test period), folded in from their items (candidates.fold_in).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from workers.exceptions import DataError, QualityGateError
from workers.training import candidates as fam
from workers.training.evaluation import Period, Protocol, evaluate, split
from workers.training.served import ServedModel, unique, with_seen

log = logging.getLogger(__name__)

TOLERANCE = 0.05             # the challenger may be up to 5% below the champion's test nDCG@10
MIN_TRAIN_INTERACTIONS = 500
CHAMPION_LEAK_MAX = 0.05
SEARCH_USERS = 1500          # validation users scored per candidate while searching
DEFAULT_BUDGET_S = 40.0
DEFAULT_PROTOCOL = Protocol()

# The search, in order: cheap and often-best first, so a tight budget still covers the families.
CANDIDATES: tuple[tuple[str, dict], ...] = (
    ("item_knn", {"neighbours": 50, "similarity": "cosine"}),
    ("als", {"factors": 32, "regularization": 0.1, "alpha": 2.0, "iterations": 12, "weighting": "binary"}),
    ("als", {"factors": 16, "regularization": 0.1, "alpha": 2.0, "iterations": 12, "weighting": "tfidf"}),
    ("ease", {"regularization": 500.0, "neighbours": 100}),
    ("als", {"factors": 64, "regularization": 0.1, "alpha": 2.0, "iterations": 12, "weighting": "none"}),
    ("item_knn", {"neighbours": 200, "similarity": "cosine"}),
    ("als", {"factors": 64, "regularization": 0.1, "alpha": 10.0, "iterations": 12, "weighting": "none"}),
    ("als", {"factors": 32, "regularization": 1.0, "alpha": 2.0, "iterations": 12, "weighting": "tfidf"}),
    ("als", {"factors": 128, "regularization": 1.0, "alpha": 2.0, "iterations": 12, "weighting": "bm25"}),
    ("item_knn", {"neighbours": 100, "similarity": "bm25"}),
    ("ease", {"regularization": 2000.0, "neighbours": 200}),
)


@dataclass
class Outcome:
    decision: str        # "deploy" | "popularity" | "keep_champion"
    reason: str
    model: ServedModel
    report: dict


def _metrics(m: dict | None) -> dict | None:
    return None if m is None else {"ndcg_at_10": round(m["ndcg_at_10"], 6), "recall_at_10": round(m["recall_at_10"], 6)}


def _fits(family: str, data: fam.Interactions) -> bool:
    return family != "ease" or data.items <= fam.EASE_MAX_ITEMS


def _leak_share(model: ServedModel, part: Period) -> float:
    """The share of the period's relevant (user, item) pairs that are among the model's seen items."""
    total = leaked = 0
    for user, relevant in zip(part.users, part.truth, strict=True):
        total += len(relevant)
        leaked += int(np.isin(relevant, model.seen_item_ids(int(user))).sum())
    return leaked / total if total else 0.0


def _expected_seconds(family: str, config: dict, rows: list[dict]) -> float:
    """A candidate's expected fit + score time from the ones already run (ALS: by factors x iterations)."""
    done = [r for r in rows if r["family"] == family and r["ndcg_at_10"] is not None]
    if not done:
        return 0.0
    if family == "als":
        scale = lambda c: max(c["factors"], 16) * c["iterations"]  # noqa: E731
        return max(r["seconds"] * scale(config) / scale(r["config"]) for r in done)
    return max(r["seconds"] for r in done)


def search(train: fam.Interactions, part: Period, budget_s: float,
           candidates=CANDIDATES, threads: int | None = None) -> list[dict]:
    """Fit and score the candidates in order until the budget is spent; one row per candidate."""
    started, rows = time.monotonic(), []
    for family, config in candidates:
        if not _fits(family, train):
            continue
        if rows and time.monotonic() - started + _expected_seconds(family, config, rows) > budget_s:
            rows.append({"family": family, "config": config, "ndcg_at_10": None, "recall_at_10": None,
                         "seconds": 0.0, "skipped": "time budget spent"})
            continue
        t = time.monotonic()
        try:
            metrics = evaluate(fam.fit(family, train, config, threads=threads), part)
        except (ValueError, MemoryError, np.linalg.LinAlgError) as exc:  # one candidate failing is not fatal
            log.warning("candidate %s %s failed: %s", family, config, exc)
            rows.append({"family": family, "config": config, "ndcg_at_10": None, "recall_at_10": None,
                         "seconds": round(time.monotonic() - t, 2), "skipped": f"failed: {exc}"})
            continue
        rows.append({"family": family, "config": config, "ndcg_at_10": round(metrics["ndcg_at_10"], 6),
                     "recall_at_10": round(metrics["recall_at_10"], 6), "seconds": round(time.monotonic() - t, 2)})
    return rows


def select(arrays: dict, champion: ServedModel | None = None, budget_s: float = DEFAULT_BUDGET_S,
           protocol: Protocol = DEFAULT_PROTOCOL, candidates=CANDIDATES, search_users: int = SEARCH_USERS,
           threads: int | None = None, champion_version: str | None = None) -> Outcome:
    started = time.monotonic()
    if not len(arrays["user_id"]):
        raise DataError("no interactions to train on")
    all_users = np.asarray(arrays["user_id"], dtype=np.int64)
    all_items = np.asarray(arrays["item_id"], dtype=np.int64)
    parts = split(arrays, protocol)
    report = {
        "ndcg_lift": None, "model": None, "popularity": None, "chosen": {"family": "popularity", "config": {}},
        "search": [], "protocol": {**parts.summary(), "val_share": protocol.val_share,
                                   "test_share": protocol.test_share, "min_eval_users": protocol.min_eval_users,
                                   "max_eval_users": protocol.max_eval_users, "search_users": search_users},
        "champion": None, "eval_users": len(parts.tst.users), "train_interactions": int(parts.train.sum()),
        "users": int(len(unique(all_users))), "items": int(len(unique(all_items))), "seconds": None,
    }

    def done(decision: str, reason: str, model: ServedModel) -> Outcome:
        report["seconds"] = round(time.monotonic() - started, 2)
        report["decision"], report["reason"] = decision, reason
        served = with_seen(model, all_users, all_items)
        if decision == "deploy":
            served = fam.fold_in(served)  # ALS: users new since the fit get factors from what they saw
        return Outcome(decision, reason, served, report)

    too_little = []
    if len(parts.val.users) < protocol.min_eval_users:
        too_little.append(f"{len(parts.val.users)} validation users")
    if len(parts.tst.users) < protocol.min_eval_users:
        too_little.append(f"{len(parts.tst.users)} test users")
    if parts.train.sum() < MIN_TRAIN_INTERACTIONS:
        too_little.append(f"{int(parts.train.sum())} training interactions (minimum {MIN_TRAIN_INTERACTIONS})")
    if too_little:
        everything = fam.interactions(arrays)
        popular = fam.popularity(everything)
        if len(parts.tst.users):
            report["popularity"] = _metrics(evaluate(fam.popularity(fam.interactions(arrays, ~parts.test)), parts.tst))
        reason = (f"too little data to judge a learned model: {', '.join(too_little)} "
                  f"(a model is judged on at least {protocol.min_eval_users} users); serving popular items")
        return done("popularity", reason, popular)

    train = fam.interactions(arrays, parts.train)
    searched = parts.val.sample(search_users, seed=protocol.seed)
    pop_val = evaluate(fam.popularity(train), searched)
    rows = search(train, searched, budget_s, candidates, threads)
    report["search"] = [{"family": "popularity", "config": {}, **_metrics(pop_val), "seconds": 0.0}] + rows
    scored = [r for r in rows if r["ndcg_at_10"] is not None]
    if not scored:
        raise DataError("no candidate model could be fitted: " + "; ".join(r.get("skipped", "") for r in rows))
    best = max(scored, key=lambda r: r["ndcg_at_10"])  # first on ties: the earlier, cheaper one
    report["chosen"] = {"family": best["family"], "config": best["config"]}

    history = fam.interactions(arrays, ~parts.test)
    model = fam.fit(best["family"], history, best["config"], threads=threads)
    ours = evaluate(model, parts.tst)
    pop = evaluate(fam.popularity(history), parts.tst)
    report["model"], report["popularity"] = _metrics(ours), _metrics(pop)
    report["ndcg_lift"] = round(ours["ndcg_at_10"] / pop["ndcg_at_10"] - 1, 6) if pop["ndcg_at_10"] else None
    name = best["family"]
    if ours["ndcg_at_10"] <= pop["ndcg_at_10"]:
        report["seconds"] = round(time.monotonic() - started, 2)
        error = QualityGateError(f"{name} nDCG@10 {ours['ndcg_at_10']:.4f} does not beat popularity "
                                 f"{pop['ndcg_at_10']:.4f} on the test period; not deploying")
        error.report = report
        raise error
    lift = f"{report['ndcg_lift']:+.0%}" if report["ndcg_lift"] is not None else "n/a"
    if champion is not None:
        leak = _leak_share(champion, parts.tst)
        basis = "artifact"
        judged = champion
        if leak > CHAMPION_LEAK_MAX:
            try:
                judged, basis = fam.fit(champion.family, history, champion.config, threads=threads), "refit"
            except (TypeError, ValueError) as exc:  # a configuration this code no longer fits: judge as is
                log.warning("cannot refit the champion's %s %s: %s", champion.family, champion.config, exc)
        theirs = evaluate(judged, parts.tst)
        floor = theirs["ndcg_at_10"] * (1 - TOLERANCE)
        verdict = "challenger" if ours["ndcg_at_10"] >= floor else "champion"
        report["champion"] = {"version": champion_version, "family": champion.family, "config": champion.config,
                              "basis": basis, "leak_share": round(leak, 4), **_metrics(theirs),
                              "tolerance": TOLERANCE, "verdict": verdict}
        if verdict == "champion":
            return done("keep_champion",
                        f"challenger {name} nDCG@10 {ours['ndcg_at_10']:.4f} is below the serving version's "
                        f"{theirs['ndcg_at_10']:.4f} by more than {TOLERANCE:.0%} on the same test users "
                        f"(champion {basis}); keeping the serving version", model)
        return done("deploy", f"{name} beats popularity by {lift} on the test period and is within "
                              f"{TOLERANCE:.0%} of the serving version ({ours['ndcg_at_10']:.4f} vs "
                              f"{theirs['ndcg_at_10']:.4f})", model)
    return done("deploy", f"{name} beats popularity by {lift} on the test period; no serving version to compare",
                model)
