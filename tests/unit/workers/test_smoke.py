import pytest

from workers.smoke import build_small_faiss_index, burst_slots, describe_worker, hold


def test_small_faiss_index_finds_each_vector_first():
    result = build_small_faiss_index(n=500, dim=8, seed=1)
    assert result == {"ntotal": 500, "dim": 8, "self_match_rate": 1.0}


def test_small_faiss_index_rejects_an_empty_request():
    with pytest.raises(ValueError, match="must be positive"):
        build_small_faiss_index(n=0)


def test_describe_worker_names_the_process():
    assert describe_worker()["pid"] > 0


def test_burst_slots_number_each_task():
    assert burst_slots(3) == [0, 1, 2]
    assert burst_slots(0) == []


def test_burst_slots_refuse_a_negative_size():
    with pytest.raises(ValueError, match="must be >= 0"):
        burst_slots(-1)


def test_hold_holds_then_names_the_process():
    assert hold(0)["pid"] > 0
