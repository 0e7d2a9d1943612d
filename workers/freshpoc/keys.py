"""Storage keys of one DAG run: Airflow run ids hold ':' and '+', which do not belong in object keys."""

from __future__ import annotations

import hashlib
import re

# One path segment of object storage: safe characters, a dot only between two others (so never
# `.`, `..` or a hidden name), no slash; at most RUN_KEY_MAX characters.
RUN_KEY = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
RUN_KEY_MAX = 160


def run_key(run_id: str) -> str:
    """A readable, unique, storage-safe key for a run id: its safe characters plus a short hash."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)
    readable = re.sub(r"\.{2,}", ".", readable)[:120].strip("_.") or "run"  # RUN_KEY allows no `..`
    return f"{readable}-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"
