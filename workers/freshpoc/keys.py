"""Storage keys of one DAG run: Airflow run ids hold ':' and '+', which do not belong in object keys."""

from __future__ import annotations

import hashlib
import re

RUN_KEY = r"^[A-Za-z0-9._-]{1,160}$"


def run_key(run_id: str) -> str:
    """A readable, unique, storage-safe key for a run id: its safe characters plus a short hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)[:120].strip("_.") or "run"
    return f"{readable}-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"
