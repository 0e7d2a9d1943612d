"""Where platform data and model artifacts live, through Airflow's ObjectStoragePath.

The same code serves `file://` (the native stack's default) and `s3://` (MinIO in compose,
any S3 in production); an S3 root names an Airflow AWS connection that holds the endpoint
and credentials.

    <root>/tenants/<tenant>/training/interactions/part-*.parquet   training data
    <root>/tenants/<tenant>/staging/<run_key>/...                    one run's intermediate artifacts
    <root>/tenants/<tenant>/models/<version>/{index.faiss,item_ids.npy,...,manifest.json}  immutable
    <root>/tenants/<tenant>/models/CURRENT.json                      pointer to the served version
"""

from __future__ import annotations

import io
import json

import numpy as np
from airflow.sdk import ObjectStoragePath


def root(uri: str, conn_id: str | None = None) -> ObjectStoragePath:
    return ObjectStoragePath(uri.rstrip("/") + "/", conn_id=conn_id or None)


def tenant_dir(base: ObjectStoragePath, tenant_id: str) -> ObjectStoragePath:
    return base / "tenants" / tenant_id


def training_dir(base: ObjectStoragePath, tenant_id: str) -> ObjectStoragePath:
    return tenant_dir(base, tenant_id) / "training" / "interactions"


def staging_dir(base: ObjectStoragePath, tenant_id: str, run_key: str) -> ObjectStoragePath:
    return tenant_dir(base, tenant_id) / "staging" / run_key


def models_dir(base: ObjectStoragePath, tenant_id: str) -> ObjectStoragePath:
    return tenant_dir(base, tenant_id) / "models"


def pointer_path(base: ObjectStoragePath, tenant_id: str) -> ObjectStoragePath:
    return models_dir(base, tenant_id) / "CURRENT.json"


def write_bytes(path: ObjectStoragePath, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(data)


def read_bytes(path: ObjectStoragePath) -> bytes:
    with path.open("rb") as f:
        return f.read()


def write_json(path: ObjectStoragePath, value) -> None:
    write_bytes(path, json.dumps(value, sort_keys=True, indent=2).encode())


def read_json(path: ObjectStoragePath):
    return json.loads(read_bytes(path))


def write_array(path: ObjectStoragePath, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    write_bytes(path, buffer.getvalue())


def read_array(path: ObjectStoragePath) -> np.ndarray:
    return np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)


def root_tenants(base: ObjectStoragePath) -> list[str]:
    tenants = base / "tenants"
    return sorted(p.name for p in tenants.iterdir()) if tenants.exists() else []
