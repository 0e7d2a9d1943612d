"""Jobs with idempotency keys, persisted in object storage so a restarted service still knows them.

    submit(key, request)   the same key returns the same job: a running or succeeded job is
                           never started again, nor one that failed on its input (4xx); a job
                           that failed otherwise (5xx) or was cut short by a restart runs again
    get(job_id)            the job's record: status running | succeeded | failed, result, error
    wait(job_id, timeout)  the record once the job no longer runs, or after timeout seconds

A job's work runs on a thread of this process; its record notes the process (`owner`), so a
record left `running` by an earlier process is reported as interrupted (503) and runs again
on the next submit.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from workers import storage
from workers.freshpoc import confine

log = logging.getLogger(__name__)


class JobError(Exception):
    """A job (or its request) failed with an HTTP status: 4xx for bad input, 5xx otherwise."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def job_id(service: str, key: str) -> str:
    """A job's id follows from its service and idempotency key, so the same key finds the same job."""
    return f"{service}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


class JobStore:
    def __init__(self, base, service: str, work: Callable[[dict, str], dict], max_workers: int = 4,
                 delay: Callable[[], float] = lambda: 0.0,
                 observe: Callable[[str, float], None] = lambda status, seconds: None,
                 redact: Callable[[dict], dict] = dict):
        """`work(request, idempotency_key)` returns the job's result or raises JobError.

        `observe(status, seconds)` hears of every job that ends (the service's metrics).
        `redact(request)` is the request as the record stores it (no credential); the work gets
        the request itself, from memory.
        """
        self.folder = base / "freshpoc" / "jobs" / service
        self.service = service
        self.owner = uuid.uuid4().hex
        self._work = work
        self._delay = delay
        self._observe = observe
        self._redact = redact
        self._lock = threading.RLock()
        self._ended = threading.Condition()  # notified whenever a job of this process ends
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"{service}-job")

    def _path(self, job_id: str):
        return self.folder / f"{job_id}.json"

    def _save(self, record: dict) -> None:
        """Write whole or not at all: a temporary object renamed over the record (atomic on file://)."""
        record["updated_at"] = time.time()
        path = self._path(record["job_id"])
        tmp = path.parent / f"{path.name}.{self.owner}.{threading.get_ident()}.tmp"
        storage.write_json(tmp, record)
        tmp.rename(path)

    def _load(self, job_id: str) -> dict | None:
        path = self._path(job_id)
        return storage.read_json(path) if path.exists() else None

    def get(self, job_id: str) -> dict | None:
        record = self._load(job_id)
        if record and record["status"] == "running" and record["owner"] != self.owner:
            record = {**record, "status": "failed",
                      "error": {"status": 503, "message": "the job was interrupted by a restart of the service"}}
        return record

    def wait(self, job_id: str, timeout: float) -> dict | None:
        """The job's record once it has ended, or as it stands after timeout seconds.

        A caller that waits a moment gets a short job's outcome in the same answer, and needs no
        second request to learn it.
        """
        with self._ended:
            self._ended.wait_for(lambda: (self.get(job_id) or {}).get("status") != "running", timeout)
        return self.get(job_id)

    def submit(self, key: str, request: dict) -> tuple[dict, bool]:
        """The job for this key, and whether this call started its work."""
        ident = job_id(self.service, key)
        stored = self._redact(request)
        with self._lock:
            record = self.get(ident)
            if record is not None:
                if record["request"] != stored:
                    raise JobError(409, f"Idempotency-Key {key!r} was used for a different request")
                if record["status"] in ("running", "succeeded") or record["error"]["status"] < 500:
                    return record, False
            record = {
                "job_id": ident, "service": self.service, "idempotency_key": key, "request": stored,
                "status": "running", "runs": (record or {}).get("runs", 0) + 1, "owner": self.owner,
                "result": None, "error": None, "created_at": (record or {}).get("created_at", time.time()),
            }
            self._save(record)
            self._pool.submit(self._run, dict(record), request, self._delay())
            return record, True

    def _run(self, record: dict, request: dict, delay_s: float) -> None:
        if delay_s:
            log.warning("%s: injected job delay of %.1fs for %s", self.service, delay_s, record["job_id"])
            time.sleep(delay_s)
        started = time.monotonic()
        try:
            record["result"] = self._work(request, record["idempotency_key"])
            record["status"] = "succeeded"
        except JobError as exc:
            record["status"], record["error"] = "failed", {"status": exc.status, "message": exc.message}
        except Exception as exc:  # any other failure is the service's fault: retryable
            # Scrubbed: an error may quote a repository URL with its credentials.
            log.error("%s: job %s failed:\n%s", self.service, record["job_id"],
                      confine.scrub("".join(traceback.format_exception(exc))))
            message = confine.scrub(f"{type(exc).__name__}: {exc}")
            record["status"], record["error"] = "failed", {"status": 500, "message": message}
        self._save(record)
        with self._ended:
            self._ended.notify_all()
        self._observe(record["status"], time.monotonic() - started)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
