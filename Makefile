# The README's two commands: `make demo` (the product, with demo data) and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STACKCTL := $(PY) -m stackctl
export PYTHONPATH := $(CURDIR):$(CURDIR)/airflow

.PHONY: setup lock up status down urls demo test test-unit test-e2e bench lint dashboards

setup:                 ## install system packages and the locked Python environment
	@airflow/setup.sh

lock:                  ## re-resolve requirements.lock from pyproject.toml (then commit it)
	uv pip compile pyproject.toml --group dev --python-version 3.11 \
	    --python-platform x86_64-manylinux_2_28 --generate-hashes -o requirements.lock

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

test: setup            ## lint, unit tests, integration tests (S3 server), then the end-to-end suite on its own stack
	$(PY) -m ruff check .
	$(PY) -m pytest tests/unit -q
	$(PY) -m pytest tests/integration -q
	$(PY) -m pytest tests/e2e -q
	$(PY) -m pytest tests/resilience -q

test-unit:
	$(PY) -m pytest tests/unit -q

test-e2e:
	$(PY) -m pytest tests/e2e -q

lint:
	$(PY) -m ruff check .

dashboards:            ## regenerate monitoring/grafana/dashboards/*.json from monitoring/dashboards/ (then commit)
	$(PY) -m monitoring.dashboards

bench: setup           ## side-by-side benchmarks; prints ratios
	$(PY) bench/stack_bench.py
	$(PY) bench/training_bench.py
	$(STACKCTL) up >/dev/null
	$(PY) bench/dq_bench.py
