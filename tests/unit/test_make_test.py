"""`make test-suites`, the body of `make test`, with a fake interpreter in place of pytest and ruff.

The live suites must run side by side, each suite's output must come out whole (not interleaved
line by line), a failing suite must stop none of the others, and the run must end with the table
and fail when any suite failed. Each suite runs in a session of its own (tests/run_suite), so an
interrupt of `make` must still reach every suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from stackctl.model import settings

SUITES = ["lint", "unit", "integration", "e2e", "resilience", "cluster"]
LIVE = ["e2e", "resilience", "cluster"]
# Stands in for `$(PY) -m pytest tests/<suite> ...` and `$(PY) -m ruff check .`: prints five lines
# slowly (concurrent suites would interleave them), records when it ran, fails if named in $FAIL.
FAKE_PYTHON = """#!/bin/bash
if [ "$2" = ruff ]; then suite=lint; else suite=${3#tests/}; fi
echo "$suite start $(date +%s.%N)" >> "$SPANS"
for i in 1 2 3 4 5; do echo "$suite line $i"; sleep 0.4; done
echo "$suite end $(date +%s.%N)" >> "$SPANS"
case " $FAIL " in *" $suite "*) exit 3;; esac
"""


def make_argv(tmp_path, fake_python: str) -> tuple[list[str], dict[str, str]]:
    fake = tmp_path / "python"
    fake.write_text(fake_python)
    fake.chmod(0o755)
    # Not the jobserver of a `make test` this test may run under.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MAKE", "MFLAGS"))}
    argv = ["make", "--no-print-directory", "-C", str(settings.REPO), "test-suites", f"PY={fake}",
            f"TEST_RESULTS={tmp_path / 'results'}"]
    return argv, {**env, "SPANS": str(tmp_path / "spans")}


def events(tmp_path) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for line in (tmp_path / "spans").read_text().splitlines():
        suite, event, at = line.split()
        found.setdefault(suite, {})[event] = float(at)
    return found


def make_test_suites(tmp_path, fail: str) -> tuple[subprocess.CompletedProcess, dict[str, tuple[float, float]]]:
    argv, env = make_argv(tmp_path, FAKE_PYTHON)
    result = subprocess.run(argv, env={**env, "FAIL": fail}, capture_output=True, text=True, timeout=120)
    return result, {suite: (found["start"], found["end"]) for suite, found in events(tmp_path).items()}


def table(stdout: str) -> dict[str, str]:
    """The closing table: {suite: outcome}."""
    rows = re.findall(r"^(\w+) +(passed|FAILED\(\d+\)|not run) ", stdout, re.MULTILINE)
    return dict(rows)


def test_every_suite_runs_the_live_ones_side_by_side_each_printed_whole_and_the_table_closes(tmp_path):
    result, spans = make_test_suites(tmp_path, fail="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert table(result.stdout) == dict.fromkeys([*SUITES, "all"], "passed")
    # Side by side: every live suite started before any of them ended.
    assert max(spans[s][0] for s in LIVE) < min(spans[s][1] for s in LIVE), spans
    # The quick suites one after another.
    assert spans["lint"][1] <= spans["unit"][0] and spans["unit"][1] <= spans["integration"][0], spans
    # Each suite's lines together, in order.
    lines = [line for line in result.stdout.splitlines() if " line " in line]
    for suite in SUITES:
        first = lines.index(f"{suite} line 1")
        assert lines[first:first + 5] == [f"{suite} line {n}" for n in range(1, 6)], result.stdout
    assert (tmp_path / "results" / "e2e.log").read_text().splitlines()[:1] == ["e2e line 1"]


def test_a_failing_suite_stops_no_other_and_the_run_fails_after_the_table(tmp_path):
    result, spans = make_test_suites(tmp_path, fail="lint resilience")
    assert result.returncode != 0
    assert set(spans) == set(SUITES)  # all ran
    outcomes = table(result.stdout)
    assert outcomes == {**dict.fromkeys(SUITES, "passed"), "lint": "FAILED(3)", "resilience": "FAILED(3)",
                        "all": outcomes["all"]}
    assert outcomes["all"].startswith("FAILED")
    # The failing suite's output is there, whole.
    assert "\n".join(f"resilience line {n}" for n in range(1, 6)) in result.stdout
    # The table comes last.
    assert result.stdout.rstrip().splitlines()[-1].startswith("load average at the end:")


# A suite that runs until interrupted, then (as pytest does on SIGINT) cleans up and exits 2.
INTERRUPTIBLE_PYTHON = """#!/bin/bash
if [ "$2" = ruff ]; then suite=lint; else suite=${3#tests/}; fi
trap 'echo "$suite interrupted $(date +%s.%N)" >> "$SPANS"; exit 2' INT
echo "$suite start $(date +%s.%N)" >> "$SPANS"
for i in $(seq 600); do sleep 0.1; done
"""


def test_an_interrupt_of_make_reaches_every_running_suite_in_its_own_session(tmp_path):
    argv, env = make_argv(tmp_path, INTERRUPTIBLE_PYTHON)
    # As a terminal's Ctrl-C: SIGINT to make's process group, which the suites' sessions are not in.
    make = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "spans").exists() or set(events(tmp_path)) != {"lint", *LIVE}:
            assert time.monotonic() < deadline, "the suites did not start"
            time.sleep(0.1)
        os.killpg(make.pid, signal.SIGINT)
        output, _ = make.communicate(timeout=60)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
    assert make.returncode != 0
    assert {suite for suite, found in events(tmp_path).items() if "interrupted" in found} == {"lint", *LIVE}, output
