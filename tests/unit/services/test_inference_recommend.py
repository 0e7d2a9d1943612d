"""What the inference service recommends: never an item the user already interacted with; popular items
(the warmed cache's, else the version's own, without seen ones) for a user the model cannot score; every
model family served, with or without a FAISS index."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from services.inference.app import create_app
from services.inference.models import ModelRegistry
from tests.unit.services.served_versions import (
    ITEMS,
    POPULAR,
    USERS,
    factor_model,
    neighbour_model,
    popularity_model,
    publish,
)
from tests.unit.workers.test_tenants import IDS
from workers import storage


@pytest.fixture
def base(tmp_path):
    return storage.root(f"file://{tmp_path}/objects")


def serve(base, model, index: bool = True, warmed: list[int] | None = None) -> TestClient:
    """The service with `model` deployed for acme (and, if given, the popular cache warmed with `warmed`)."""
    version = publish(base, "acme", "scheduled__1", model, index=index)
    client = TestClient(create_app(ModelRegistry(base), lambda tenant_id: list(warmed or []), "token"),
                        headers={"Authorization": "Bearer token"})
    assert client.post("/api/v1/deploy", json={"tenant_id": "acme", "version": version}).status_code == 200
    if warmed is not None:
        assert client.post("/api/v1/cache/warm", json={"tenant_id": "acme"}).status_code == 200
    return client


def recommend(client, **params) -> dict:
    response = client.get("/api/v1/recommend", params={"tenant_id": "acme", **params})
    assert response.status_code == 200, response.text
    return response.json()


def ranked_items(model, user_id: int) -> list[int]:
    """Every item by the user's exact score, best first."""
    row = int(np.searchsorted(USERS, user_id))
    return [int(ITEMS[i]) for i in np.argsort(-(model.item_factors @ model.user_factors[row]), kind="stable")]


@pytest.mark.parametrize("index", [True, False], ids=["faiss-index", "exact-scoring"])
def test_a_user_who_interacted_with_the_top_items_gets_the_next_ones(base, index):
    ranking = ranked_items(factor_model(), 7)
    client = serve(base, factor_model(seen={7: ranking[:5]}), index=index)

    got = recommend(client, user_id=7, k=5)

    assert got["source"] == "model"
    assert [item["item_id"] for item in got["items"]] == ranking[5:10]
    # Another user, who saw nothing, gets the top items themselves.
    other = ranked_items(factor_model(), 8)
    assert [item["item_id"] for item in recommend(client, user_id=8, k=5)["items"]] == other[:5]


def test_a_user_who_saw_nearly_everything_gets_only_unseen_items(base):
    ranking = ranked_items(factor_model(), 7)
    client = serve(base, factor_model(seen={7: ranking[:97]}))

    got = [item["item_id"] for item in recommend(client, user_id=7, k=10)["items"]]

    assert sorted(got) == sorted(ranking[97:])


def test_a_user_the_model_never_saw_gets_the_versions_popular_items_until_the_cache_is_warmed(base):
    client = serve(base, factor_model())

    got = recommend(client, user_id=999_999, k=4)

    assert got["source"] == "popular"
    assert got["items"] == [{"item_id": int(i), "score": None} for i in POPULAR[:4]]


def test_a_user_the_model_never_saw_gets_the_warmed_cache_s_popular_items(base):
    client = serve(base, factor_model(), warmed=[5, 6, 7, 8, 9])

    got = recommend(client, user_id=999_999, k=3)

    assert (got["source"], [item["item_id"] for item in got["items"]]) == ("popular", [5, 6, 7])


def test_a_user_without_fitted_factors_gets_popular_items_without_the_ones_they_saw(base):
    """A user who arrived after training (with_seen gives a zero factor row) is served popular items, never
    one they interacted with, from the warmed cache and from the version's own list alike."""
    model = factor_model(seen={7: [100, 98, 6]})
    model.user_factors[int(np.searchsorted(USERS, 7))] = 0
    own = recommend(serve(base, model), user_id=7, k=3)
    assert (own["source"], [item["item_id"] for item in own["items"]]) == ("popular", [99, 97, 96])

    warmed = recommend(serve(base, model, warmed=[6, 5, 100, 4, 3]), user_id=7, k=3)
    assert (warmed["source"], [item["item_id"] for item in warmed["items"]]) == ("popular", [5, 4, 3])


def test_a_neighbour_model_without_an_index_serves_users_and_similar_items(base):
    # Item 10 (position 9) has neighbours at positions 10..14: items 11..15, scored 5..1.
    client = serve(base, neighbour_model(seen={7: [10, 11]}))

    by_user = recommend(client, user_id=7, k=3)
    assert by_user["source"] == "model"
    got = [item["item_id"] for item in by_user["items"]]
    assert len(got) == 3 and not {10, 11} & set(got)
    assert got[0] == 12  # neighbour of both 10 (score 4) and 11 (score 5)

    similar = recommend(client, item_id=10, k=3)
    assert (similar["source"], [item["item_id"] for item in similar["items"]]) == ("similar", [11, 12, 13])


def test_a_popularity_model_serves_popular_items_without_seen_ones_and_has_no_similar_items(base):
    client = serve(base, popularity_model(seen={7: [100, 99]}))

    got = recommend(client, user_id=7, k=3)
    assert (got["source"], [item["item_id"] for item in got["items"]]) == ("popular", [98, 97, 96])

    refused = client.get("/api/v1/recommend", params={"tenant_id": "acme", "item_id": 10})
    assert refused.status_code == 404
    assert "popularity model, which has no similar items" in refused.json()["detail"]


def test_similar_items_of_a_factor_model_and_an_unknown_item(base):
    client = serve(base, factor_model())

    similar = recommend(client, item_id=10, k=5)
    assert similar["source"] == "similar" and len(similar["items"]) == 5
    assert 10 not in [item["item_id"] for item in similar["items"]]

    unknown = client.get("/api/v1/recommend", params={"tenant_id": "acme", "item_id": 5000})
    assert unknown.status_code == 404 and unknown.json()["detail"] == "tenant acme has no item 5000"


def test_a_deploy_reports_the_family_it_loaded(base):
    version = publish(base, "acme", "scheduled__1", neighbour_model())
    client = TestClient(create_app(ModelRegistry(base), lambda tenant_id: [], "token"),
                        headers={"Authorization": "Bearer token"})

    loaded = client.post("/api/v1/deploy", json={"tenant_id": "acme", "version": version}).json()

    assert loaded == {"tenant_id": "acme", "version": version, "family": "item_knn", "items": 100}


@pytest.mark.parametrize(("tenant_id", "valid"), IDS.items())
def test_a_tenant_id_is_taken_exactly_when_it_is_a_slug(base, tenant_id, valid):
    """The owner's rule (workers/tenants.py): pydantic's Rust regex reads `$` as the end, so "acme\\n" is a 422."""
    client = TestClient(create_app(ModelRegistry(base), lambda tenant_id: [], "token"),
                        headers={"Authorization": "Bearer token"})
    answers = [client.get("/api/v1/recommend", params={"tenant_id": tenant_id, "user_id": 1}),
               client.post("/api/v1/deploy", json={"tenant_id": tenant_id, "version": "m-000000000000"}),
               client.post("/api/v1/cache/warm", json={"tenant_id": tenant_id})]
    # A slug gets past validation to the registry, which has no model for it.
    assert [answer.status_code for answer in answers] == [404 if valid else 422] * 3
