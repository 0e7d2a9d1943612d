"""workers/library_preload.py: what a worker pool imports before it forks, and that forking after it is safe."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from stackctl.errors import ConfigError
from stackctl.model import worker_pools
from stackctl.model.settings import REPO, load_source
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import native_processes
from workers import library_preload

SECRETS = {name: f"secret-{name}" for name in NativeStack.load(REPO).source["secrets"]}
ENV = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'airflow'}"}


def _worker_env(tmp_path) -> dict[str, dict[str, str]]:
    return {p.pool: p.env for p in native_processes(NativeStack.load(tmp_path), SECRETS) if p.pool}


def test_only_the_heavy_pool_preloads_the_ml_libraries(tmp_path):
    env = _worker_env(tmp_path)
    heavy = library_preload.modules_from_env(env["heavy"])
    light = library_preload.modules_from_env(env["light"])
    assert set(library_preload.HEAVY_LIBRARIES) <= set(heavy)
    assert not set(library_preload.HEAVY_LIBRARIES) & set(light)
    # Neither preloads this repository's task code: a deployed change needs no worker restart.
    assert not [entry for entry in heavy + light if entry.startswith(("workers", "dags"))]


def test_every_configured_entry_imports_and_its_warm_up_exists():
    """An Airflow or library upgrade that renames one fails here, not at a worker's start."""
    for spec in load_source()["worker_pools"].values():
        for entry in spec.get("preload", []):
            module, _, function = entry.partition(":")
            code = f"import importlib; m = importlib.import_module({module!r})"
            code += f"; assert callable(getattr(m, {function!r}))" if function else ""
            done = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{entry}: {done.stderr[-1500:]}"


@pytest.mark.parametrize("value, expected", [
    ("", ()),
    (" numpy , scipy.sparse,,", ("numpy", "scipy.sparse")),
    ("airflow.sdk.io.fs:_register_filesystems", ("airflow.sdk.io.fs:_register_filesystems",)),
])
def test_modules_from_env(value, expected):
    assert library_preload.modules_from_env({library_preload.PRELOAD_ENV: value}) == expected
    assert library_preload.modules_from_env({}) == ()


@pytest.mark.parametrize("bad", ["numpy;rm -rf /", "os.system('x')", "a..b", "mod:fn:more", "1abc"])
def test_a_bad_entry_is_refused_by_the_worker_and_by_the_deployment_model(bad):
    with pytest.raises(ValueError, match="not a module"):
        library_preload.modules_from_env({library_preload.PRELOAD_ENV: f"numpy,{bad}"})
    with pytest.raises(ConfigError, match="not a module"):
        worker_pools.preload_environment({"preload": ["numpy", bad]})
    with pytest.raises(ConfigError, match="a list of module names"):
        worker_pools.preload_environment({"preload": "numpy"})
    assert worker_pools.preload_environment({}) == {}


def test_preload_imports_and_calls_warm_ups(monkeypatch):
    calls = []
    monkeypatch.setattr(library_preload, "_probe_warm_up", lambda: calls.append(1), raising=False)
    timings = library_preload.preload(["json", "workers.library_preload:_probe_warm_up"])
    assert set(timings) == {"json", "workers.library_preload:_probe_warm_up"} and calls == [1]
    with pytest.raises(ModuleNotFoundError):
        library_preload.preload(["no_such_module_anywhere"])
    with pytest.raises(AttributeError):
        library_preload.preload(["json:no_such_function"])


def _run(code: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_a_process_forked_after_the_heavy_preload_runs_openmp_regions_and_the_parent_runs_none():
    """What the heavy worker's main process does at start: preload, then the fork canary, which must pass."""
    done = _run("""
        import os
        from workers import library_preload as lp
        lp.preload(lp.HEAVY_LIBRARIES)
        threads = lp.thread_count()
        print("canary", lp.fork_canary(timeout_s=60))
        # No OpenMP pool started here (OpenBLAS's may stop at the fork: its pthread_atfork handler).
        assert lp.thread_count() <= threads, "the canary ran a parallel region in the parent"
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "canary" in done.stdout


def test_the_canary_fails_when_the_parent_ran_a_parallel_region_before_the_fork():
    """The hazard it guards against is real: a child forked after the parent's OpenMP region hangs."""
    done = _run("""
        from workers import library_preload as lp
        lp.preload(["numpy", "faiss"])
        lp._parallel_regions()  # what a preloaded module must never do at import
        try:
            lp.fork_canary(timeout_s=10)
        except RuntimeError as exc:
            print("refused:", exc)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: a process forked after the preload hung" in done.stdout
