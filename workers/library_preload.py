"""The third-party libraries a worker pool imports once in its main process, before it forks.

A Celery worker forks its pool processes from its main process, and Airflow forks every task's
process from a pool process: what the main process has imported, every task inherits for free
(copy-on-write pages, shared until written). A heavy task (ALS training, a FAISS build or
recall check) otherwise imports numpy, scipy.sparse, pyarrow, implicit and faiss again in each
fresh task process: 0.4-0.5 s of CPU on a quiet 2-core machine, more while the other pool
competes for the cores, and about 60 MB of private memory per task process.

Only the pools that name libraries (config.yaml worker_pools.<pool>.preload) preload them: the
deployment model (stackctl/model/processes.py) hands the list to the worker's main process as
PRELOAD_ENV, and workers/celery_imports.py imports them here. The light pool names none, so its up to
16 processes neither pay the memory nor the start-up time.

Forking after these imports is safe as long as no parallel region has run in the parent:
OpenBLAS (numpy's) stops its thread pool before a fork and restarts it in the child (its
pthread_atfork handlers), and GNU OpenMP (faiss's, implicit's) creates its threads only at the
first parallel region, which nothing here runs. fork_canary() proves it at every worker start:
it forks a child that runs a parallel region in each runtime, and fails the worker's start if
the child hangs (what every task forked from a parent that ran one would do) or fails.

Nothing here imports this repository's own task code: tasks keep importing it in their own
process, so a deployed change takes effect without a worker restart.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)

# The comma-separated modules a worker's main process imports before it forks (stackctl.model.processes).
PRELOAD_ENV = "CONTROLPLANE_WORKER_PRELOAD"
# What the heavy pool's tasks import (workers/training): config.yaml names these for the heavy pool.
HEAVY_LIBRARIES = ("numpy", "scipy.sparse", "pyarrow", "pyarrow.parquet", "pyarrow.dataset", "pyarrow.compute",
                   "implicit.cpu.als", "faiss")
# A module, or module:function for a warm-up without arguments whose result the module caches
# (airflow.sdk.io.fs:_register_filesystems: the storage file systems every ObjectStoragePath resolves).
_ENTRY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?$")


def modules_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The entries PRELOAD_ENV names (module or module:function), in order; empty when it is unset or blank.

    An entry that is neither is refused (ValueError): the worker then fails to start with that
    message instead of running without what it was told to preload.
    """
    value = (os.environ if environ is None else environ).get(PRELOAD_ENV, "")
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    for name in names:
        if not _ENTRY.fullmatch(name):
            raise ValueError(f"{PRELOAD_ENV}: {name!r} is not a module or module:function "
                             "(expected e.g. numpy,scipy.sparse,airflow.sdk.io.fs:_register_filesystems)")
    return names


def thread_count() -> int:
    """Threads of this process now (Linux: /proc/self/task); 1 where /proc is not there."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def preload(entries: Iterable[str]) -> dict[str, float]:
    """Import each module (and call module:function), in order; seconds per entry.

    An import error or a missing function propagates: the worker fails to start.
    """
    timings: dict[str, float] = {}
    for entry in entries:
        started = time.perf_counter()
        module_name, _, function = entry.partition(":")
        module = importlib.import_module(module_name)
        if function:
            getattr(module, function)()
        timings[entry] = round(time.perf_counter() - started, 3)
    return timings


def _parallel_regions() -> None:
    """One OpenMP parallel region in each preloaded runtime: a FAISS search, and implicit's parallel ALS step."""
    import sys

    if "faiss" in sys.modules:
        import faiss
        import numpy as np

        faiss.omp_set_num_threads(2)
        vectors = np.random.default_rng(0).random((512, 16), dtype=np.float32)
        index = faiss.IndexFlatIP(16)
        index.add(vectors)
        index.search(vectors[:64], 5)
    if "implicit.cpu.als" in sys.modules:
        import scipy.sparse
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        matrix = scipy.sparse.random(64, 32, density=0.2, format="csr", dtype="float32", random_state=0)
        with threadpool_limits(1, "blas"):  # as workers/training/candidates.py trains
            AlternatingLeastSquares(factors=4, iterations=1, num_threads=2, random_state=0).fit(
                matrix, show_progress=False)


def fork_canary(timeout_s: float = 30.0) -> float:
    """Fork a child that runs an OpenMP parallel region in every preloaded runtime; its seconds.

    RuntimeError when the child hangs (killed after timeout_s) or fails: a parallel region ran in
    this process before the fork, and every forked task process would hang the same way.
    """
    import sys

    started = time.monotonic()
    if "faiss" not in sys.modules and "implicit.cpu.als" not in sys.modules:
        return 0.0  # no OpenMP runtime preloaded: nothing can hang
    pid = os.fork()
    if pid == 0:  # the child: run the regions, exit without Python's clean-up (the parent's atexit hooks)
        code = 0
        try:
            _parallel_regions()
        except BaseException:  # noqa: BLE001 - any failure is the parent's to report
            code = 1
        os._exit(code)
    deadline = started + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise RuntimeError(f"a process forked after the preload hung in an OpenMP parallel region for "
                               f"{timeout_s:.0f} s: a parallel region ran in the worker's main process before the fork")
        time.sleep(0.01)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"a process forked after the preload failed its parallel regions "
                           f"(exit {os.waitstatus_to_exitcode(status)})")
    return round(time.monotonic() - started, 3)


def preload_from_env(environ: dict[str, str] | None = None) -> dict[str, float]:
    """What workers/celery_imports.py runs in a worker's main process: import PRELOAD_ENV's modules, check
    the threads."""
    modules = modules_from_env(environ)
    if not modules:
        return {}
    timings = preload(modules)
    timings["fork_canary"] = fork_canary()
    log.info("preloaded before the pool forks (%d threads now): %s", thread_count(), timings)
    return timings
