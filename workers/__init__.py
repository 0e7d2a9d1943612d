"""Code that Airflow tasks run on the Celery workers, as plain functions testable without Airflow."""
