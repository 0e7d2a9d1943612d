import numpy as np
import pytest

from stackctl.demo.data import TenantSpec, generate, to_parquet_parts
from workers.schema import INTERACTION_TYPES, TRAINING_SCHEMA

END_US = 1_795_500_000_000_000  # a fixed end time: every generated data set is the same


@pytest.fixture(scope="module")
def end_us():
    return END_US


@pytest.fixture(scope="module")
def small_tenant():
    return generate(TenantSpec("acme", n_users=1500, n_items=600, n_interactions=30_000, seed=3), END_US)


def test_generation_is_deterministic(end_us):
    spec = TenantSpec("acme", n_users=200, n_items=100, n_interactions=3000, seed=5)
    a, b = generate(spec, end_us), generate(spec, end_us)
    assert np.array_equal(a.item_id, b.item_id) and np.array_equal(a.occurred_at_us, b.occurred_at_us)
    assert not np.array_equal(a.item_id, generate(TenantSpec("acme", 200, 100, 3000, seed=6), end_us).item_id)


def test_interactions_have_a_long_tail_and_span_the_period(small_tenant, end_us):
    counts = np.sort(np.bincount(small_tenant.item_id))[::-1]
    top_share = counts[: len(counts) // 10].sum() / counts.sum()
    assert top_share > 0.3  # the top 10% of items take far more than 10% of interactions
    days = (small_tenant.occurred_at_us.max() - small_tenant.occurred_at_us.min()) / 86_400e6
    assert 55 < days <= 60
    assert small_tenant.occurred_at_us.max() <= end_us


def test_users_keep_their_taste(small_tenant):
    """Most of a user's interactions fall in a few topics: the structure a model can learn."""
    topics = small_tenant.item_topic[small_tenant.item_id - 1]
    shares = []
    for user in np.unique(small_tenant.user_id)[:300]:
        mine = topics[small_tenant.user_id == user]
        if len(mine) >= 10:
            shares.append(np.bincount(mine).max() / len(mine))
    assert np.mean(shares) > 0.4  # 50 topics: uniform taste would give about 0.1


def test_parquet_parts_round_trip(small_tenant):
    import io

    import pyarrow.parquet as pq

    parts = to_parquet_parts(small_tenant.to_arrow(), rows_per_part=10_000)
    assert len(parts) == 3
    assert sum(pq.read_table(io.BytesIO(p)).num_rows for p in parts) == 30_000


def test_the_files_follow_the_training_schema(small_tenant):
    table = small_tenant.to_arrow()
    assert table.schema == TRAINING_SCHEMA
    assert set(table.column("interaction_type").unique().to_pylist()) == set(INTERACTION_TYPES)
