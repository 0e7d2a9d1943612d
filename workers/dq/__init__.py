"""data_quality_check's work: checks pushed down to PostgreSQL, their history, and alerting."""
