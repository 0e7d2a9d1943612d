import numpy as np
import pytest

from workers import storage
from workers.training import artifacts
from workers.training.als import Embeddings
from workers.training.index import build_index


def staged(base, key="k1"):
    rng = np.random.default_rng(0)
    embeddings = Embeddings(
        user_ids=np.arange(1, 51), user_factors=rng.standard_normal((50, 8)).astype("float32"),
        item_ids=np.arange(1, 101), item_factors=rng.standard_normal((100, 8)).astype("float32"),
        popular_item_ids=np.arange(100, 0, -1),
    )
    artifacts.save_embeddings(base, "acme", key, embeddings)
    index, _ = build_index(embeddings.item_factors, embeddings.user_factors)
    artifacts.save_index(base, "acme", key, index)
    return embeddings


def test_a_version_is_deterministic_per_run_and_tenant():
    assert artifacts.version_for("run-1", "acme") == artifacts.version_for("run-1", "acme")
    assert artifacts.version_for("run-1", "acme") != artifacts.version_for("run-2", "acme")
    assert artifacts.version_for("run-1", "acme") != artifacts.version_for("run-1", "globex")


def test_publishing_twice_is_idempotent(base):
    staged(base)
    manifest = {"data_fingerprint": "abc"}
    assert artifacts.publish(base, "acme", "k1", "m-000000000001", manifest) is True
    files = sorted(p.name for p in (storage.models_dir(base, "acme") / "m-000000000001").iterdir())
    assert artifacts.publish(base, "acme", "k1", "m-000000000001", manifest) is False
    assert sorted(p.name for p in (storage.models_dir(base, "acme") / "m-000000000001").iterdir()) == files
    assert "manifest.json" in files


def test_a_published_version_is_immutable(base):
    staged(base)
    artifacts.publish(base, "acme", "k1", "m-000000000001", {"data_fingerprint": "abc"})
    with pytest.raises(FileExistsError, match="versions are immutable"):
        artifacts.publish(base, "acme", "k1", "m-000000000001", {"data_fingerprint": "other"})


def test_a_published_version_loads_for_serving(base):
    embeddings = staged(base)
    artifacts.publish(base, "acme", "k1", "m-000000000001", {"data_fingerprint": "abc"})
    loaded = artifacts.load_version(base, "acme", "m-000000000001")
    assert loaded["index"].ntotal == 100
    assert np.array_equal(loaded["user_factors"], embeddings.user_factors)


def test_the_pointer_flips_and_rolls_back(base):
    assert artifacts.read_pointer(base, "acme") is None
    artifacts.write_pointer(base, "acme", "m-000000000001")
    assert artifacts.read_pointer(base, "acme") == "m-000000000001"
    artifacts.write_pointer(base, "acme", None)
    assert artifacts.read_pointer(base, "acme") is None
