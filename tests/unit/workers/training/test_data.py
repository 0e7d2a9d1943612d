import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stackctl.demo.seed import export_tenant
from workers import storage
from workers.exceptions import DataError
from workers.training.data import DataLimits, load_interactions


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


def test_too_few_interactions_are_refused(base, small_tenant):
    export_tenant(base, small_tenant)
    with pytest.raises(DataError, match="30000 interactions, fewer than the 50000 required"):
        load_interactions(base, "acme", DataLimits(min_interactions=50_000))
