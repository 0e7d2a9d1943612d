import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stackctl.demo.data import TenantSpec, generate
from stackctl.demo.seed import export_tenant
from workers import storage
from workers.exceptions import DataError
from workers.training.data import DataLimits, load_interactions
from workers.training.evaluation import Protocol


def test_valid_data_loads_with_a_fingerprint(base, small_tenant):
    export_tenant(base, small_tenant)
    arrays, summary = load_interactions(base, "acme")
    assert summary["interactions"] == 30_000 and summary["files"] == 1
    assert len(summary["fingerprint"]) == 64
    assert load_interactions(base, "acme")[1]["fingerprint"] == summary["fingerprint"]
    assert arrays["item_id"].dtype.kind == "i"


def test_a_missing_prefix_is_named(base):
    with pytest.raises(DataError, match="tenant ghost: no training data at"):
        load_interactions(base, "ghost")


def test_an_empty_prefix_is_refused(base):
    (storage.training_dir(base, "acme")).mkdir(parents=True)
    with pytest.raises(DataError, match="holds no Parquet files"):
        load_interactions(base, "acme")


def test_a_corrupt_file_is_named(base, small_tenant):
    export_tenant(base, small_tenant)
    storage.write_bytes(storage.training_dir(base, "acme") / "part-00001.parquet", b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="part-00001.parquet is not a readable Parquet file"):
        load_interactions(base, "acme")


def test_a_wrong_schema_is_named(base):
    table = pa.table({"user": [1, 2], "thing": ["a", "b"]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes(storage.training_dir(base, "acme") / "part-00000.parquet", buffer.getvalue())
    with pytest.raises(DataError, match=r"lacks columns \['user_id', 'item_id'"):
        load_interactions(base, "acme")


def test_small_data_is_not_refused_here_selection_decides(base, end_us):
    """A few dozen interactions load: whether they are enough to judge a model is selection's decision."""
    export_tenant(base, generate(TenantSpec("acme", n_users=20, n_items=10, n_interactions=60, seed=1), end_us))
    arrays, summary = load_interactions(base, "acme")
    assert (summary["interactions"], len(arrays["user_id"])) == (60, 60)
    assert summary["users"] < Protocol().min_eval_users  # too few to judge a model on, and still loaded


def test_data_without_a_usable_interaction_is_refused(base):
    table = pa.table({"user_id": pa.array([None, 2], pa.int64()), "item_id": pa.array([1, None], pa.int64()),
                      "interaction_type": ["view", "view"], "weight": pa.array([1.0, 1.0], pa.float32()),
                      "occurred_at": pa.array([0, 0], pa.timestamp("us", tz="UTC"))})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes(storage.training_dir(base, "acme") / "part-00000.parquet", buffer.getvalue())
    with pytest.raises(DataError, match="no interaction in 1 training files has a user, an item and a time"):
        load_interactions(base, "acme")


def test_the_file_count_limit_is_kept(base, small_tenant):
    export_tenant(base, small_tenant)
    with pytest.raises(DataError, match="1 training files, more than 0"):
        load_interactions(base, "acme", DataLimits(max_files=0))
