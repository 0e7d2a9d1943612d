import json

import numpy as np
import pytest

from stackctl.demo.data import TenantSpec, generate
from workers.exceptions import QualityGateError
from workers.training import candidates
from workers.training.evaluation import Protocol
from workers.training.selection import TOLERANCE, select

FAST = (
    ("item_knn", {"neighbours": 50, "similarity": "cosine"}),
    ("als", {"factors": 32, "regularization": 0.1, "alpha": 10.0, "iterations": 8, "weighting": "none"}),
)
WEAK = (("als", {"factors": 2, "regularization": 100.0, "alpha": 1.0, "iterations": 1, "weighting": "none"}),)


def test_too_little_data_serves_popular_items_and_says_why(end_us, arrays_of):
    data = arrays_of(generate(TenantSpec("tiny", 60, 40, 1200, seed=5), end_us))
    outcome = select(data, None, candidates=FAST, protocol=Protocol(min_eval_users=100))
    assert outcome.decision == "popularity"
    assert "too little data" in outcome.reason and "validation users" in outcome.reason
    assert outcome.model.family == "popularity"
    assert outcome.report["ndcg_lift"] is None and outcome.report["search"] == []
    # the popularity model serves every user popular items minus everything they saw
    user = int(data["user_id"][0])
    seen = set(data["item_id"][data["user_id"] == user].tolist())
    items, source = outcome.model.recommend(user, 5)
    assert source == "popular" and items and not seen & {it["item_id"] for it in items}
    json.dumps(outcome.report)


def test_selection_deploys_the_best_candidate_and_reports_it(small_tenant, arrays_of):
    data = arrays_of(small_tenant)
    outcome = select(data, None, candidates=FAST)
    report = outcome.report
    assert outcome.decision == "deploy", outcome.reason
    assert report["model"]["ndcg_at_10"] > report["popularity"]["ndcg_at_10"] and report["ndcg_lift"] > 0.2
    rows = report["search"]
    assert [r["family"] for r in rows] == ["popularity", "item_knn", "als"]
    best = max(rows[1:], key=lambda r: r["ndcg_at_10"])
    assert report["chosen"] == {"family": best["family"], "config": best["config"]}
    assert outcome.model.family == best["family"] and outcome.model.config == best["config"]
    assert report["protocol"]["mode"] == "global" and report["eval_users"] >= 100
    assert report["champion"] is None
    # deployed with every interaction as seen: nothing a user interacted with comes back
    for user in np.unique(data["user_id"])[:50]:
        seen = set(data["item_id"][data["user_id"] == user].tolist())
        assert not seen & {it["item_id"] for it in outcome.model.recommend(int(user), 10)[0]}
    json.dumps(report)


def test_the_search_stops_at_the_time_budget(small_tenant, arrays_of):
    outcome = select(arrays_of(small_tenant), None, budget_s=0.0, candidates=FAST)
    rows = outcome.report["search"]
    assert rows[1]["ndcg_at_10"] is not None
    assert rows[2]["skipped"] and rows[2]["ndcg_at_10"] is None
    assert outcome.report["chosen"]["family"] == "item_knn"


def test_a_model_that_does_not_beat_popularity_is_refused(end_us, arrays_of):
    data = generate(TenantSpec("flat", 1500, 600, 30_000, popular_share=1.0, seed=4), end_us)
    with pytest.raises(QualityGateError, match="does not beat popularity") as caught:
        select(arrays_of(data), None, candidates=FAST)
    assert caught.value.report["popularity"]["ndcg_at_10"] > 0


def test_a_challenger_worse_than_the_champion_is_not_deployed(small_tenant, arrays_of):
    data = arrays_of(small_tenant)
    champion = select(data, None, candidates=FAST).model
    outcome = select(data, champion, candidates=WEAK, champion_version="v1")
    compared = outcome.report["champion"]
    assert outcome.decision == "keep_champion", outcome.reason
    assert compared["verdict"] == "champion" and compared["version"] == "v1"
    assert outcome.report["model"]["ndcg_at_10"] < compared["ndcg_at_10"] * (1 - TOLERANCE)
    assert "keeping the serving version" in outcome.reason
    # the champion was trained on the test period: its configuration is refitted to judge it fairly
    assert compared["basis"] == "refit" and compared["leak_share"] > 0.5


def test_a_champion_trained_before_the_test_period_is_judged_as_it_is(small_tenant, arrays_of):
    data = arrays_of(small_tenant)
    old = data["occurred_at_us"] < np.quantile(data["occurred_at_us"], 0.7)
    weak = candidates.als(candidates.interactions({k: v[old] for k, v in data.items()}), factors=2,
                          regularization=100.0, iterations=1)
    outcome = select(data, weak, candidates=FAST)
    assert outcome.decision == "deploy"
    assert outcome.report["champion"]["basis"] == "artifact"
    assert outcome.report["champion"]["verdict"] == "challenger"


def test_every_family_fits_into_a_served_model_whose_neighbours_are_pruned(small_tenant, arrays_of):
    data = candidates.interactions(arrays_of(small_tenant))
    for family, config in (("item_knn", {"neighbours": 20, "similarity": "bm25"}),
                           ("ease", {"regularization": 300.0, "neighbours": 20})):
        model = candidates.fit(family, data, config)
        assert model.family == family and not model.has_vectors
        assert np.diff(model.neighbour_indptr).max() <= 20
        assert len(model.neighbour_indptr) == len(model.item_ids) + 1
        assert model.recommend(int(data.user_ids[0]), 10)[1] == "model"
    before = data.matrix.data.copy()
    for weighting in ("none", "binary", "bm25"):  # fitting never changes the shared interactions
        candidates.als(data, factors=8, iterations=1, weighting=weighting)
    assert np.array_equal(data.matrix.data, before)
    model = candidates.als(data, factors=8, iterations=2, weighting="tfidf")
    assert model.has_vectors and model.item_factors.shape == (len(data.item_ids), 8)
    assert candidates.popularity(data).popular[0] == data.item_ids[np.argmax(np.diff(data.matrix.tocsc().indptr))]
    with pytest.raises(ValueError, match="at most"):
        candidates.ease(_wide(data))


def _wide(data):
    import scipy.sparse as sp

    wide = candidates.Interactions(data.user_ids, np.arange(candidates.EASE_MAX_ITEMS + 1), sp.csr_matrix(
        (data.users, candidates.EASE_MAX_ITEMS + 1), dtype=np.float32), data.popular, data.seen)
    return wide


def test_als_users_new_since_the_fit_are_folded_in_from_what_they_saw(small_tenant, arrays_of):
    data = arrays_of(small_tenant)
    old = data["occurred_at_us"] < np.quantile(data["occurred_at_us"], 0.8)
    model = candidates.als(candidates.interactions({k: v[old] for k, v in data.items()}), factors=16, iterations=4)
    new_users = np.setdiff1d(data["user_id"][~old], data["user_id"][old])
    assert len(new_users)
    from workers.training.served import with_seen

    everyone = with_seen(model, data["user_id"], data["item_id"])
    user = int(new_users[0])
    assert everyone.recommend(user, 5)[1] == "popular"
    folded = candidates.fold_in(everyone)
    items, source = folded.recommend(user, 10)
    seen = set(data["item_id"][data["user_id"] == user].tolist())
    assert source == "model" and not seen & {it["item_id"] for it in items}
    known = int(data["user_id"][old][0])  # users the fit saw keep their factors
    row = np.searchsorted(folded.user_ids, known)
    assert np.array_equal(folded.user_factors[row], everyone.user_factors[row])
    # a folded-in user resembles the fitted users: their top items overlap with ALS's own fit on more data
    assert np.isfinite(folded.user_factors).all()
