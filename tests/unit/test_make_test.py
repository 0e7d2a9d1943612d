"""`make test-suites`, the body of `make test`, with a fake interpreter in place of pytest and ruff.

The live suites must run side by side, each suite's output must come out whole (not interleaved
line by line), a failing suite must stop none of the others, and the run must end with the table
and fail when any suite failed.
"""

from __future__ import annotations

import os
import re
import subprocess

from stackctl import settings

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


def make_test_suites(tmp_path, fail: str) -> tuple[subprocess.CompletedProcess, dict[str, tuple[float, float]]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    spans = tmp_path / "spans"
    # Not the jobserver of a `make test` this test may run under.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MAKE", "MFLAGS"))}
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(settings.REPO), "test-suites", f"PY={fake}",
         f"TEST_RESULTS={tmp_path / 'results'}"],
        env={**env, "FAIL": fail, "SPANS": str(spans)}, capture_output=True, text=True, timeout=120,
    )
    found: dict[str, dict[str, float]] = {}
    for line in spans.read_text().splitlines():
        suite, event, at = line.split()
        found.setdefault(suite, {})[event] = float(at)
    return result, {suite: (events["start"], events["end"]) for suite, events in found.items()}


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
