"""Failure injection for tests: a plan of faults that expires, set through the admin endpoint.

The plan lives in memory only (a restart clears it) and expires after its ttl_s, so a fault
can never outlive the test that set it by more than the TTL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass

MAX_TTL_S = 3600


@dataclass(frozen=True)
class FaultPlan:
    fail_503_times: int = 0       # answer the next N job/query requests with 503
    reject_400: str | None = None  # answer every job/query request with 400 and this message
    response_delay_s: float = 0.0  # delay each job/query response (client timeouts)
    job_delay_s: float = 0.0       # a started job waits this long before it works (slow service)
    ttl_s: float = 600.0           # the plan is dropped after this long


class Faults:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._plan: FaultPlan | None = None
        self._expires_at = 0.0
        self._failures_left = 0

    def set(self, plan: FaultPlan) -> None:
        if not 0 < plan.ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl_s must be in (0, {MAX_TTL_S}]")
        with self._lock:
            self._plan, self._expires_at, self._failures_left = plan, self._clock() + plan.ttl_s, plan.fail_503_times

    def clear(self) -> None:
        with self._lock:
            self._plan = None

    def _current(self) -> FaultPlan | None:
        if self._plan is not None and self._clock() >= self._expires_at:
            self._plan = None
        return self._plan

    def describe(self) -> dict | None:
        """The active plan with what is left of it, for /health and the admin endpoint."""
        with self._lock:
            plan = self._current()
            if plan is None:
                return None
            return {**asdict(plan), "fail_503_left": self._failures_left,
                    "expires_in_s": round(self._expires_at - self._clock(), 1)}

    def on_request(self) -> tuple[float, tuple[int, str] | None]:
        """For one job/query request: (delay in seconds, (status, message) to answer instead, or None)."""
        with self._lock:
            plan = self._current()
            if plan is None:
                return 0.0, None
            if plan.reject_400 is not None:
                return plan.response_delay_s, (400, plan.reject_400)
            if self._failures_left > 0:
                self._failures_left -= 1
                return plan.response_delay_s, (503, f"injected failure ({self._failures_left} more to come)")
            return plan.response_delay_s, None

    def job_delay_s(self) -> float:
        with self._lock:
            plan = self._current()
            return plan.job_delay_s if plan else 0.0
