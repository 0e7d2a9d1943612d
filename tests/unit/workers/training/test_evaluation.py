import numpy as np
import pytest

from workers.training import candidates
from workers.training.evaluation import Protocol, evaluate, per_user_ndcg, ranking_metrics, split
from workers.training.served import ServedModel, build_seen

DAY = 86_400 * 1_000_000


def arrays(users, items, times, weights=None):
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    return {"user_id": users, "item_id": items, "occurred_at_us": np.asarray(times, dtype=np.int64),
            "weight": np.ones(len(users), np.float32) if weights is None else np.asarray(weights, np.float32)}


def test_the_global_split_is_ordered_in_time_and_sized_by_share(small_tenant, arrays_of):
    data = arrays_of(small_tenant)
    parts = split(data, Protocol(val_share=0.1, test_share=0.15))
    times = data["occurred_at_us"]
    assert parts.mode == "global"
    assert times[parts.train].max() <= times[parts.validation].min()
    assert times[parts.validation].max() <= times[parts.test].min()
    assert parts.test.sum() == pytest.approx(0.15 * len(times), rel=0.02)
    assert parts.validation.sum() == pytest.approx(0.10 * len(times), rel=0.02)
    assert not (parts.train & parts.validation).any() and (parts.train | parts.validation | parts.test).all()
    # test users have history before the test period; their relevant items are new to them and known
    history = parts.train | parts.validation
    seen = set(zip(data["user_id"][history].tolist(), data["item_id"][history].tolist(), strict=True))
    known_items = set(data["item_id"][history].tolist())
    for user, relevant in zip(parts.tst.users[:200], parts.tst.truth[:200], strict=True):
        assert (data["user_id"][history] == user).any()
        assert relevant.size and all((int(user), int(i)) not in seen and i in known_items for i in relevant)


def test_equal_timestamps_stay_on_one_side():
    users = np.arange(1000) % 100
    times = np.repeat([0, DAY, 2 * DAY, 3 * DAY], 250)  # four coarse periods
    parts = split(arrays(users, np.arange(1000) % 37, times), Protocol(min_eval_users=1))
    assert parts.test.sum() == 250 and parts.validation.sum() == 250


def test_too_few_users_in_the_global_split_falls_back_to_each_users_own_last_interactions():
    # every user is active in one burst, one after another: a global time split has almost no returning users
    rng = np.random.default_rng(1)
    users = np.repeat(np.arange(300), 20)
    items = rng.integers(0, 100, len(users))
    times = np.arange(len(users)) * 1_000_000
    parts = split(arrays(users, items, times), Protocol(min_eval_users=100))
    assert parts.mode == "per_user"
    assert len(parts.tst.users) >= 250
    for user in (0, 150, 299):
        rows = np.flatnonzero(users == user)
        assert parts.test[rows].tolist() == [False] * 16 + [False, False] + [True, True]
        assert parts.validation[rows].tolist() == [False] * 16 + [True, True] + [False, False]


def test_eval_users_are_capped_with_a_fixed_seed(small_tenant, arrays_of):
    one = split(arrays_of(small_tenant), Protocol(max_eval_users=150, seed=7))
    two = split(arrays_of(small_tenant), Protocol(max_eval_users=150, seed=7))
    assert len(one.tst.users) == 150 and one.tst.eligible_users > 150
    assert np.array_equal(one.tst.users, two.tst.users)
    assert len(one.val.sample(50).users) == 50


def test_ranking_metrics():
    truth = [np.array([1, 2]), np.array([5])]
    recs = np.array([[1, 9, 9, 9, 9, 9, 9, 9, 9, 2], [7, 5, -1, -1, -1, -1, -1, -1, -1, -1]])
    discounts = 1 / np.log2(np.arange(2, 12))
    expected = [(discounts[0] + discounts[9]) / (discounts[0] + discounts[1]), discounts[1] / discounts[0]]
    assert per_user_ndcg(recs, truth) == pytest.approx(expected)
    assert ranking_metrics(recs, truth) == pytest.approx({"ndcg_at_10": np.mean(expected), "recall_at_10": 1.0})


def test_evaluation_excludes_items_seen_before_the_period_and_does_not_count_them():
    # user 1 saw items 1 and 2 in training, then interacts with 1 again (not new) and 3 (new) in the test period
    users = [1, 1, 2, 2, 2, 3, 3] + [1, 1] + [4] * 3 + [4] * 2
    items = [1, 2, 1, 2, 3, 1, 4] + [1, 3] + [1, 2, 5] + [5, 6]
    times = [0] * 7 + [9 * DAY] * 2 + [0] * 3 + [9 * DAY] * 2
    data = arrays(users, items, times)
    parts = split(data, Protocol(val_share=0.0, test_share=0.2, min_eval_users=1))
    assert parts.tst.users.tolist() == [1]  # user 4's new item 6 is unknown before the period; 5 is not new
    assert [t.tolist() for t in parts.tst.truth] == [[3]]
    model = candidates.popularity(candidates.interactions(data, ~parts.test))  # popular: 1, 2, 3, 5, 4
    assert evaluate(model, parts.tst)["ndcg_at_10"] == pytest.approx(1.0)  # 1 and 2 seen: 3 ranks first


def test_evaluation_scores_any_served_model_on_raw_ids():
    item_ids = np.array([100, 200, 300], dtype=np.int64)
    users, indptr, seen = build_seen(item_ids, np.array([7]), np.array([100]))
    model = ServedModel("item_knn", {}, item_ids, np.array([100, 200, 300]), users, indptr, seen,
                        neighbour_indptr=np.array([0, 2, 2, 2]), neighbour_items=np.array([2, 1], np.int32),
                        neighbour_scores=np.array([0.9, 0.1], np.float32))
    data = arrays([7, 7, 8, 8, 7], [100, 300, 200, 300, 200], [0, 9 * DAY, 0, 0, 9 * DAY])
    parts = split(data, Protocol(val_share=0.0, test_share=0.4, min_eval_users=1))
    assert sorted(parts.tst.truth[0].tolist()) == [200, 300]
    assert evaluate(model, parts.tst) == pytest.approx({"ndcg_at_10": 1.0, "recall_at_10": 1.0})
