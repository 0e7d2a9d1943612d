"""The smoke DAG's work: a light I/O-sized task and a heavy FAISS build, one per worker pool, and bursts."""

from __future__ import annotations

import os
import socket
import time


def describe_worker() -> dict:
    """Where the task ran: enough to see that the light queue reached a live worker."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def build_small_faiss_index(n: int = 5000, dim: int = 32, seed: int = 7) -> dict:
    """Build an exact index over random vectors and check each vector finds itself first."""
    import faiss  # heavy imports stay inside the task
    import numpy as np

    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be positive, got n={n}, dim={dim}")
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype("float32")
    index = faiss.index_factory(dim, "Flat", faiss.METRIC_L2)
    index.add(vectors)
    _, ids = index.search(vectors[:100], 1)
    return {
        "ntotal": int(index.ntotal),
        "dim": dim,
        "self_match_rate": float((ids[:, 0] == np.arange(min(100, n))).mean()),
    }


def burst_slots(count: int) -> list[int]:
    """One slot number per burst task (an empty list maps to no task)."""
    if count < 0:
        raise ValueError(f"a burst size must be >= 0, got {count}")
    return list(range(count))


def hold(seconds: float) -> dict:
    """Hold this worker process for `seconds`, then say where it ran."""
    time.sleep(seconds)
    return describe_worker()
