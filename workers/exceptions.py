"""Failures of platform work, and whether Airflow should retry them.

    AirflowFailException            (Airflow: fail the task now, no retry)
    └── DataError                   the input is wrong: missing, empty, corrupt, wrong schema
        └── QualityGateError        the output is not good enough to ship: model or index below its bar
    TransientError                  (Airflow retries) a service or store that may recover

A wrong input or a failed gate fails the same way on every try, so retrying only delays the page.
"""

from airflow.sdk.exceptions import AirflowFailException


class DataError(AirflowFailException):
    """The data cannot be used; the message says what is wrong with it."""


class QualityGateError(DataError):
    """A model or index did not pass its quality gate; nothing is deployed."""


class TransientError(Exception):
    """A dependency failed in a way that may pass on retry."""
