import numpy as np
import pytest

from workers.training.served import ARRAYS, ServedModel, arrays_of, build_seen, with_seen

ITEMS = np.array([10, 20, 30, 40, 50, 60], dtype=np.int64)
POPULAR = np.array([30, 10, 60, 20, 50, 40], dtype=np.int64)


def factor_model(users=(1, 2, 3), seen=((1, 10), (1, 30), (2, 20)), seed=0, dim=4):
    rng = np.random.default_rng(seed)
    user_ids, indptr, items = build_seen(ITEMS, np.array([u for u, _ in seen]), np.array([i for _, i in seen]),
                                         users=np.array(users))
    user_factors = rng.normal(size=(len(user_ids), dim)).astype(np.float32)
    user_factors[user_ids == 3] = 0  # a user who was not fitted
    return ServedModel("als", {"factors": dim}, ITEMS, POPULAR, user_ids, indptr, items,
                       user_factors=user_factors, item_factors=rng.normal(size=(len(ITEMS), dim)).astype(np.float32))


def neighbour_model(seen=((1, 10),)):
    user_ids, indptr, items = build_seen(ITEMS, np.array([u for u, _ in seen]), np.array([i for _, i in seen]))
    # item 0 (10) -> 1 (20) 0.9, 2 (30) 0.5; item 1 (20) -> 0 (10) 0.9; others none
    return ServedModel("item_knn", {"k": 2}, ITEMS, POPULAR, user_ids, indptr, items,
                       neighbour_indptr=np.array([0, 2, 3, 3, 3, 3, 3], dtype=np.int64),
                       neighbour_items=np.array([1, 2, 0], dtype=np.int32),
                       neighbour_scores=np.array([0.9, 0.5, 0.9], dtype=np.float32))


def ids(items):
    return [it["item_id"] for it in items]


def test_seen_items_are_never_recommended():
    model = factor_model()
    for k in (1, 3, 6):
        items, source = model.recommend(1, k)
        assert source == "model"
        assert not {10, 30} & set(ids(items))
        assert len(items) == min(k, 4)
        batch = model.recommend_batch(np.array([1, 2]), k)
        assert not {10, 30} & set(batch[0].tolist())
        assert 20 not in batch[1].tolist()


def test_model_recommendations_are_ordered_by_exact_score():
    model = factor_model()
    items, _ = model.recommend(2, 5)
    expected = model.item_factors @ model.user_factors[1]
    expected[1] = -np.inf  # item 20 seen
    assert ids(items) == ITEMS[np.argsort(-expected)][:5].tolist()
    assert model.recommend_batch(np.array([2]), 5)[0].tolist() == ids(items)


def test_unknown_or_unfitted_user_gets_popular_items_minus_seen():
    model = factor_model()
    items, source = model.recommend(99, 3)
    assert (ids(items), source) == ([30, 10, 60], "popular")
    assert all(it["score"] is None for it in items)
    model = with_seen(model, np.array([3, 3]), np.array([30, 60]))  # user 3 has a zero factor row
    items, source = model.recommend(3, 3)
    assert (ids(items), source) == ([10, 20, 50], "popular")
    assert model.recommend_batch(np.array([99, 3]), 3).tolist() == [[30, 10, 60], [10, 20, 50]]


def test_with_seen_rebuilds_the_seen_items_and_gives_new_users_zero_factors():
    model = factor_model()
    updated = with_seen(model, np.array([1, 7, 7, 7]), np.array([50, 20, 20, 999]))  # 999: not in the catalogue
    assert updated.user_ids.tolist() == [1, 2, 3, 7]
    assert ITEMS[updated._seen(0)].tolist() == [50]
    assert ITEMS[updated._seen(1)].tolist() == []  # user 2 kept, nothing seen in these interactions
    assert ITEMS[updated._seen(3)].tolist() == [20]
    assert np.array_equal(updated.user_factors[:3], model.user_factors)
    assert not updated.user_factors[3].any()
    assert 50 not in ids(updated.recommend(1, 5)[0]) and 10 in ids(updated.recommend(1, 5)[0])
    assert ids(updated.recommend(7, 2)[0]) == [30, 10]  # new user: popular minus seen
    assert model.user_ids.tolist() == [1, 2, 3]  # the original is unchanged


def test_exact_scoring_and_a_faiss_index_agree():
    import faiss

    rng = np.random.default_rng(5)
    n_items, dim = 500, 16
    item_ids = np.arange(0, n_items * 3, 3, dtype=np.int64)
    users = rng.integers(0, 200, 3000)
    items = item_ids[rng.integers(0, n_items, 3000)]
    user_ids, indptr, seen = build_seen(item_ids, users, items)
    model = ServedModel("als", {}, item_ids, item_ids[::-1].copy(), user_ids, indptr, seen,
                        user_factors=rng.normal(size=(len(user_ids), dim)).astype(np.float32),
                        item_factors=rng.normal(size=(n_items, dim)).astype(np.float32))
    index = faiss.IndexFlatIP(dim)
    index.add(model.item_factors)
    batch = model.recommend_batch(user_ids, 10)
    for row, user in enumerate(user_ids[:50]):
        exact, _ = model.recommend(int(user), 10)
        indexed, _ = model.recommend(int(user), 10, index=index)
        assert ids(exact) == ids(indexed) == batch[row].tolist()
        assert not set(ids(exact)) & set(item_ids[model._seen(row)].tolist())
        assert [it["score"] for it in exact] == pytest.approx([it["score"] for it in indexed], rel=1e-4)
    similar = model.similar_items(int(item_ids[7]), 5)
    assert ids(similar) == ids(model.similar_items(int(item_ids[7]), 5, index=index))
    assert int(item_ids[7]) not in ids(similar)


def test_neighbour_scoring_sums_the_similarities_of_seen_items():
    model = neighbour_model(seen=((1, 10), (2, 10), (2, 20), (3, 40)))
    items, source = model.recommend(1, 2)
    assert source == "model" and ids(items) == [20, 30]
    assert [it["score"] for it in items] == pytest.approx([0.9, 0.5])
    # user 2 saw 10 and 20: their neighbours are each other (excluded), then 30; the rest from popular
    items, source = model.recommend(2, 3)
    assert ids(items) == [30, 60, 50] and source == "model"
    assert items[1]["score"] is None
    # user 3's item has no neighbours: popular minus seen
    assert model.recommend(3, 2) == ([{"item_id": 30, "score": None}, {"item_id": 10, "score": None}], "popular")
    assert model.recommend_batch(np.array([1, 2, 3, 8]), 3).tolist() == [
        [20, 30, 60], [30, 60, 50], [30, 10, 60], [30, 10, 60]]
    assert ids(model.similar_items(10, 5)) == [20, 30]
    assert model.similar_items(12345, 5) is None


def test_popularity_model_and_short_catalogues_pad():
    user_ids, indptr, seen = build_seen(ITEMS, np.array([1, 1, 1, 1, 1]), np.array([10, 20, 30, 40, 50]))
    model = ServedModel("popularity", {}, ITEMS, POPULAR, user_ids, indptr, seen)
    assert model.recommend(1, 3) == ([{"item_id": 60, "score": None}], "popular")
    assert model.recommend_batch(np.array([1]), 3).tolist() == [[60, -1, -1]]
    assert model.similar_items(10, 3) is None
    assert not model.has_vectors
    assert set(arrays_of(model)) == {"item_ids", "popular", "user_ids", "seen_indptr", "seen_items"}
    assert set(arrays_of(factor_model())) < set(ARRAYS)
    with pytest.raises(ValueError, match="unknown model family"):
        ServedModel("svd", {}, ITEMS, POPULAR, user_ids, indptr, seen)
