# The README's two commands: `make demo` (the product, with demo data) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACKCTL := $(PY) -m stackctl
export PYTHONPATH := $(CURDIR):$(CURDIR)/airflow

.PHONY: setup lock up status down urls demo test test-unit test-e2e test-resilience test-cluster test-integration \
	test-suites quick-suites bench lint dashboards

setup:                 ## install system packages and .venv from requirements.lock (requirements-dev.lock for test, test-unit, bench)
	@airflow/setup.sh $(if $(filter test test-unit bench,$(MAKECMDGOALS)),--dev)

lock:                  ## re-resolve uv.lock from pyproject.toml (Linux x86_64 + aarch64), export both locks (then commit all three)
	uv lock
	uv export --frozen --no-dev --no-emit-project --quiet -o requirements.lock
	uv export --frozen --all-groups --no-emit-project --quiet -o requirements-dev.lock

up:                    ## start the native stack and wait until every component is healthy
	@$(STACKCTL) up

status:                ## supervised processes and component health
	@$(STACKCTL) status

down:                  ## stop the native stack
	@$(STACKCTL) down

urls:
	@$(STACKCTL) urls

demo: setup up         ## run the product's DAGs on the native stack and summarise each run
	@$(PY) -m stackctl.demo

test: setup            ## every suite (the live ones side by side), then a table of each one's outcome and time
	@$(MAKE) --no-print-directory test-suites

test-unit: setup       ## the fast loop: unit tests only
	$(PYTEST) tests/unit -q

test-e2e test-resilience test-cluster test-integration: test-%:  ## one suite, with its own outcome line
	@mkdir -p $(TEST_RESULTS)
	@$(MAKE) --no-print-directory suite-$*; status=$$?; $(call table,$*); exit $$status

# The suites. The live ones (e2e and resilience each start their own stack on free ports, cluster
# its own network-namespace hosts) spend much of their time waiting on heartbeats and alert windows,
# so they run side by side, with the quick suites (one after another) beside them, each suite in a
# session (a CPU share) of its own (tests/run_suite); test stacks start one at a time
# (tests/e2e/conftest.py, start_slot). Each suite's output is printed whole when it ends
# (--output-sync) and is also in $(TEST_RESULTS)/<suite>.log as it runs (tail -f it).
# --keep-going: a failing suite stops none of the others; test-suites fails after the table.
TEST_RESULTS := .test-results
PYTEST := $(PY) -m pytest
QUICK_SUITES := lint unit integration
LIVE_SUITES := cluster resilience e2e

test-suites:
	@rm -rf $(TEST_RESULTS) && mkdir -p $(TEST_RESULTS) && date +%s > $(TEST_RESULTS)/started
	@$(MAKE) --no-print-directory --keep-going --jobs=4 --output-sync=target \
	    $(addprefix suite-,$(LIVE_SUITES)) quick-suites; status=$$?; \
	read -r started < $(TEST_RESULTS)/started; echo "$$status $$(( $$(date +%s) - started ))" > $(TEST_RESULTS)/all.outcome; \
	$(call table,$(QUICK_SUITES) $(LIVE_SUITES) all); exit $$status

quick-suites:
	@status=0; for suite in $(QUICK_SUITES); do $(MAKE) --no-print-directory suite-$$suite || status=1; done; exit $$status

suite-lint:
	@$(call timed,lint,$(PY) -m ruff check .)

suite-%:
	@$(call timed,$*,$(PYTEST) tests/$* -q --durations=15 -o cache_dir=.pytest_cache/$*)

# $(call timed,SUITE,COMMAND): COMMAND in a session of its own, its output in $(TEST_RESULTS)/SUITE.log
# as it runs and then printed whole, its exit status and seconds in $(TEST_RESULTS)/SUITE.outcome.
timed = PYTHONUNBUFFERED=1 tests/run_suite $(1) $(TEST_RESULTS) $(2)

# $(call table,SUITES): a line per suite (passed, FAILED with its exit status, or not run) and its time
# (`all`: the wall time of every suite together).
table = printf '\n%-12s %-10s %8s\n' suite outcome time; \
	for suite in $(1); do \
	  if read -r code seconds 2>/dev/null < $(TEST_RESULTS)/$$suite.outcome; then \
	    outcome=$$( [ "$$code" = 0 ] && echo passed || echo "FAILED($$code)" ); \
	    printf '%-12s %-10s %5dm%02ds\n' $$suite $$outcome $$((seconds / 60)) $$((seconds % 60)); \
	  else printf '%-12s %-10s\n' $$suite 'not run'; fi; \
	done; echo "load average at the end: $$(cut -d' ' -f1-3 /proc/loadavg)"

lint:
	$(PY) -m ruff check .

dashboards:            ## regenerate monitoring/grafana/dashboards/*.json from monitoring/dashboards/ (then commit)
	$(PY) -m monitoring.dashboards

bench: setup           ## side-by-side benchmarks; prints ratios
	$(PY) bench/stack_bench.py
	$(PY) bench/freshpoc_bench.py
	$(PY) bench/training_bench.py
	$(PY) bench/training_run_bench.py
	$(PY) bench/autoscale_bench.py
	$(STACKCTL) up >/dev/null
	$(PY) bench/dq_bench.py
