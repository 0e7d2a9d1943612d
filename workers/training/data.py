"""Load and validate a tenant's training data from object storage."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workers import storage
from workers.exceptions import DataError
from workers.schema import TRAINING_SCHEMA


@dataclass(frozen=True)
class DataLimits:
    """Limits on what a tenant may hand in. Small data is not refused: model selection
    (workers/training/selection.py) decides whether there is enough to judge a learned model, and
    serves popular items otherwise."""

    max_files: int = 1000
    max_total_bytes: int = 2 * 1024**3


def _parts(base, tenant_id: str) -> list:
    prefix = storage.training_dir(base, tenant_id)
    if not prefix.exists():
        raise DataError(f"tenant {tenant_id}: no training data at {prefix}")
    parts = sorted((p for p in prefix.iterdir() if p.name.endswith(".parquet")), key=lambda p: p.name)
    return parts


def _read_table(parts: list, tenant_id: str) -> tuple[pa.Table, str, int]:
    tables, digest, total = [], hashlib.sha256(), 0
    for part in parts:
        data = storage.read_bytes(part)
        digest.update(part.name.encode() + b"\0" + data)
        total += len(data)
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"tenant {tenant_id}: {part.name} is not a readable Parquet file ({exc})") from None
        missing = [f.name for f in TRAINING_SCHEMA if f.name not in table.column_names]
        if missing:
            raise DataError(f"tenant {tenant_id}: {part.name} lacks columns {missing}; expected {TRAINING_SCHEMA}")
        try:
            tables.append(table.select(TRAINING_SCHEMA.names).cast(TRAINING_SCHEMA))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"tenant {tenant_id}: {part.name} has the wrong column types ({exc})") from None
    return pa.concat_tables(tables), digest.hexdigest(), total


def load_interactions(base, tenant_id: str, limits: DataLimits = DataLimits()) -> tuple[dict, dict]:
    """Validated interactions as numpy arrays, and a summary with the data's fingerprint.

    Checks, in order: the prefix exists, the file count, the total size, each file's
    schema, then that some interaction has a user, an item and a time. Data that is merely small
    passes: whether it is enough to judge a learned model is the selection's decision.
    """
    parts = _parts(base, tenant_id)
    if not parts:
        raise DataError(f"tenant {tenant_id}: the training prefix holds no Parquet files")
    if len(parts) > limits.max_files:
        raise DataError(f"tenant {tenant_id}: {len(parts)} training files, more than {limits.max_files}")
    sizes = [p.stat()["size"] if isinstance(p.stat(), dict) else p.stat().st_size for p in parts]
    if sum(sizes) > limits.max_total_bytes:
        raise DataError(f"tenant {tenant_id}: {sum(sizes)} bytes of training data, over {limits.max_total_bytes}")
    table, fingerprint, total_bytes = _read_table(parts, tenant_id)
    valid = pa.compute.and_(
        pa.compute.is_valid(table["user_id"]),
        pa.compute.and_(pa.compute.is_valid(table["item_id"]), pa.compute.is_valid(table["occurred_at"])),
    )
    table = table.filter(valid)
    arrays = {
        "user_id": table["user_id"].to_numpy(),
        "item_id": table["item_id"].to_numpy(),
        "weight": table["weight"].fill_null(1.0).to_numpy().astype(np.float32),
        "occurred_at_us": table["occurred_at"].cast(pa.int64()).to_numpy(),
    }
    summary = {
        "files": len(parts),
        "bytes": total_bytes,
        "interactions": int(table.num_rows),
        "users": int(len(np.unique(arrays["user_id"]))),
        "items": int(len(np.unique(arrays["item_id"]))),
        "fingerprint": fingerprint,
    }
    if not summary["interactions"]:
        raise DataError(f"tenant {tenant_id}: no interaction in {len(parts)} training files has a user, an item "
                        "and a time: nothing to train on")
    return arrays, summary
