"""The s3:// path, against a real S3-API server process (moto's standalone server), not in-process patches."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest

from stackctl.demo.data import TenantSpec, generate
from stackctl.demo.seed import export_tenant
from workers import storage
from workers.exceptions import DataError
from workers.training import artifacts
from workers.training.data import load_interactions

BUCKET = "platform"


@pytest.fixture(scope="module")
def s3_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.2)
    yield url
    server.terminate()
    server.wait(10)


@pytest.fixture
def s3_base(s3_server, monkeypatch):
    """An Airflow AWS connection to the S3 server, given the way a deployment gives it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    extra = {"endpoint_url": s3_server, "region_name": "us-east-1"}
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_S3", json.dumps({"conn_type": "aws", "extra": extra}))
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    return storage.root(f"s3://{BUCKET}/demo", conn_id="platform_s3")


def test_training_data_round_trips_through_s3(s3_base, s3_server):
    data = generate(TenantSpec("acme", 500, 200, 8_000, seed=2), 1_795_500_000_000_000)
    export_tenant(s3_base, data)
    keys = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").list_objects_v2(Bucket=BUCKET)
    assert [o["Key"] for o in keys["Contents"]] == ["demo/tenants/acme/training/interactions/part-00000.parquet"]
    _, summary = load_interactions(s3_base, "acme")
    assert summary["interactions"] == 8_000


def test_a_missing_s3_prefix_is_a_data_error(s3_base):
    with pytest.raises(DataError, match="tenant ghost: no training data"):
        load_interactions(s3_base, "ghost")


def test_the_pointer_flips_on_s3(s3_base):
    artifacts.write_pointer(s3_base, "acme", "m-000000000001")
    assert artifacts.read_pointer(s3_base, "acme") == "m-000000000001"
