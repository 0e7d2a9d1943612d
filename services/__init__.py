"""Reference services that the DAGs call."""
