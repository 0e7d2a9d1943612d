"""Where platform data and model artifacts live, through Airflow's ObjectStoragePath.

The same code serves `file://` (the native stack's default) and `s3://` (MinIO in compose,
any S3 in production); an S3 root names an Airflow AWS connection that holds the endpoint
and credentials.

    <root>/tenants/<tenant>/training/interactions/part-*.parquet   training data
    <root>/tenants/<tenant>/staging/<run_key>/...                    one run's intermediate artifacts
    <root>/tenants/<tenant>/models/<version>/{index.faiss,item_ids.npy,...,manifest.json}  immutable
    <root>/tenants/<tenant>/models/CURRENT.json                      pointer to the served version

The pointer and the manifests are replaced atomically (replace_atomically): later reads depend on
them, and an in-place write torn by a crash would break every one of those reads.
"""

from __future__ import annotations

import io
import json
import os
import secrets

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


# s3fs sends a body below 2 x its 50 MiB chunk size as one PutObject, a larger one as a multipart
# upload; pointers and manifests are kilobytes, so a body this large is a misuse, refused.
_SINGLE_PUT_MAX = 50 * 2**20


def replace_atomically(path: ObjectStoragePath, data: bytes) -> None:
    """Replace the object whole: a reader, or a crash at any point, sees the old content or the new, never a mix.

    For the files later reads depend on (a pointer, a manifest). On file://: write a temporary file
    in the same folder, fsync it, rename it over the target (atomic within one file system), then
    fsync the folder so the rename itself survives a power loss. Elsewhere (s3://): a single put,
    which an object store makes visible all at once.
    """
    if path.protocol == "file":
        _replace_local_file(path.path, data)
        return
    if len(data) >= _SINGLE_PUT_MAX:
        raise ValueError(f"{path}: {len(data)} bytes is too large to replace in one put (limit {_SINGLE_PUT_MAX})")
    path.fs.pipe_file(path.path, data)


def _replace_local_file(target: str, data: bytes) -> None:
    folder, name = os.path.split(target)
    os.makedirs(folder, exist_ok=True)
    # A leading dot: listings of versions (names starting "m-") never mistake it for one. Not
    # mkstemp: its 0600 would pass to the target; os.open's 0666 less the umask is what a plain write gives.
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)


def read_bytes(path: ObjectStoragePath) -> bytes:
    with path.open("rb") as f:
        return f.read()


def write_json(path: ObjectStoragePath, value) -> None:
    write_bytes(path, _json_bytes(value))


def replace_json(path: ObjectStoragePath, value) -> None:
    """write_json for a file later reads depend on: see replace_atomically."""
    replace_atomically(path, _json_bytes(value))


def _json_bytes(value) -> bytes:
    return json.dumps(value, sort_keys=True, indent=2).encode()


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
