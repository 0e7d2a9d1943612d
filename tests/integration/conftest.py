"""Integration tests: real server processes the tests start themselves, but no Airflow stack."""

import os
import tempfile

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-integration-")
os.environ.pop("AIRFLOW_CONFIG", None)
