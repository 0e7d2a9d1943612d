"""The s3:// path, against a real S3-API server process (moto's standalone server), not in-process patches."""

from __future__ import annotations

import boto3
import pytest

from stackctl.demo.data import TenantSpec, generate
from stackctl.demo.seed import export_tenant
from workers.exceptions import DataError
from workers.training import artifacts
from workers.training.data import load_interactions


def test_training_data_round_trips_through_s3(s3_base, s3_server, s3_bucket):
    data = generate(TenantSpec("acme", 500, 200, 8_000, seed=2), 1_795_500_000_000_000)
    export_tenant(s3_base, data)
    keys = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").list_objects_v2(
        Bucket=s3_bucket, Prefix="demo/tenants/acme/training/")
    assert [o["Key"] for o in keys["Contents"]] == ["demo/tenants/acme/training/interactions/part-00000.parquet"]
    _, summary = load_interactions(s3_base, "acme")
    assert summary["interactions"] == 8_000


def test_a_missing_s3_prefix_is_a_data_error(s3_base):
    with pytest.raises(DataError, match="tenant ghost: no training data"):
        load_interactions(s3_base, "ghost")


def test_the_pointer_flips_on_s3(s3_base):
    artifacts.write_pointer(s3_base, "acme", "m-000000000001")
    assert artifacts.read_pointer(s3_base, "acme") == "m-000000000001"
