# The README's two commands: `make demo` (the product, with demo data) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACKCTL := $(PY) -m stackctl
export PYTHONPATH := $(CURDIR):$(CURDIR)/airflow

.PHONY: setup lock up status down urls demo test test-unit test-e2e bench lint dashboards

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

test: setup            ## lint, unit and integration tests, the end-to-end and fault suites on a stack of their own, then the multi-host cluster
	$(PY) -m ruff check .
	$(PY) -m pytest tests/unit -q
	$(PY) -m pytest tests/integration -q
	$(PY) -m pytest tests/e2e -q
	$(PY) -m pytest tests/resilience -q
	$(PY) -m pytest tests/cluster -q

test-unit: setup
	$(PY) -m pytest tests/unit -q

test-e2e:
	$(PY) -m pytest tests/e2e -q

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
