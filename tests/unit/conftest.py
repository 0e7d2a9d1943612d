"""Unit tests run without a stack: Airflow gets a throwaway home, so nothing touches ~/airflow."""

import os
import tempfile

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-unit-")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.pop("AIRFLOW_CONFIG", None)
