"""Shared test configuration: the repository root and `airflow/` (stackctl) are importable."""
