import numpy as np
import pytest

from workers.exceptions import QualityGateError
from workers.training.index import build_index, choose_index, recall_at_k, sample_queries, validate_index


def test_small_catalogues_get_an_exact_index_and_large_ones_ivf():
    assert choose_index(5_000).factory == "Flat"
    choice = choose_index(200_000)
    assert choice.factory == f"IVF{choice.nlist},Flat"
    assert 4 * np.sqrt(200_000) * 0.99 <= choice.nlist <= 16 * np.sqrt(200_000)
    assert 200_000 / choice.nlist >= 39


def clustered(n, dim=16, clusters=200, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype("float32")
    return (centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, dim))).astype("float32")


def test_ivf_is_tuned_to_the_recall_target():
    items = clustered(30_000)
    queries = sample_queries(clustered(2_000, seed=1), 300)
    index, info = build_index(items, queries)
    assert info["factory"].startswith("IVF") and info["nprobe"] >= 1
    assert validate_index(index, items, sample_queries(clustered(2_000, seed=2), 300))["recall_at_10"] >= 0.95


def test_an_index_below_the_gate_is_refused():
    items = clustered(30_000)
    index, _ = build_index(items, sample_queries(clustered(2_000, seed=1), 300))
    index.nprobe = 1  # too few lists probed for this catalogue
    with pytest.raises(QualityGateError, match="below the 0.95 gate"):
        validate_index(index, items, sample_queries(clustered(2_000, seed=2), 300))


def test_recall_counts_ties_by_score():
    """Two identical vectors: returning either one is a hit."""
    import faiss

    items = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype="float32")
    exact = faiss.IndexFlatIP(2)
    exact.add(items)
    swapped = faiss.IndexIDMap(faiss.IndexFlatIP(2))
    swapped.add_with_ids(items[[1, 0, 2]], np.array([1, 0, 2]))
    assert recall_at_k(swapped, exact, np.array([[1.0, 0.0]], dtype="float32"), k=1) == 1.0
