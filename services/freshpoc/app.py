"""HTTP API of one FreshPoC reference service (the routes are listed in the package docstring)."""


import hmac
import logging
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram

from workers.freshpoc import graph_store
from workers.freshpoc.services import BY_NAME

from ..auth import require_token
from ..body_limit import MAX_BODY_BYTES, BodyLimit
from ..http_metrics import instrument
from .faults import MAX_TTL_S, FaultPlan, Faults
from .jobs import JobError, JobStore
from .stages import JOB_SERVICES, Context, job_work

log = logging.getLogger(__name__)
# The longest a job submission may wait for its job to end (wait_s): the wait holds one of the
# server's threads, so it stays short; a longer job is polled.
MAX_START_WAIT_S = 5.0
PUBLIC_FIELDS = ("job_id", "service", "idempotency_key", "status", "runs", "result", "error",
                 "created_at", "updated_at")


def _public(record: dict) -> dict:
    return {key: record.get(key) for key in PUBLIC_FIELDS}


def _validation_message(exc: RequestValidationError) -> str:
    return "; ".join(".".join(str(p) for p in error["loc"]) + ": " + error["msg"] for error in exc.errors())


def create_app(service: str, ctx: Context, faults: Faults, admin_token: str | None, job_token: str | None) -> FastAPI:
    """admin_token: the fault-injection routes' (None: they are off); job_token: the job routes' (services/auth.py)."""
    app = FastAPI(title=f"freshpoc-{service}")
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES["freshpoc"])
    metrics = instrument(app, "freshpoc")

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    def inject_faults() -> None:
        delay, failure = faults.on_request()
        if delay:
            time.sleep(delay)
        if failure:
            log.warning("%s: injected %s: %s", service, *failure)
            raise HTTPException(*failure)

    @app.get("/health")
    def health() -> dict:
        return {"service": service, "status": "ok", "faults": faults.describe()}

    def require_admin(authorization: str = Header("")) -> None:
        if admin_token is None:
            raise HTTPException(404, "fault injection is disabled: FRESHPOC_ADMIN_TOKEN_FILE is not set")
        if not hmac.compare_digest(authorization.encode(), f"Bearer {admin_token}".encode()):
            raise HTTPException(401, "a valid admin bearer token is required")

    @app.get("/admin/faults", dependencies=[Depends(require_admin)])
    def get_faults() -> dict:
        return {"faults": faults.describe()}

    @app.put("/admin/faults", dependencies=[Depends(require_admin)])
    def put_faults(plan: FaultPlan) -> dict:
        if not 0 < plan.ttl_s <= MAX_TTL_S or plan.fail_503_times < 0 or plan.response_delay_s < 0 \
                or plan.job_delay_s < 0:
            raise HTTPException(422, f"counts and delays must be >= 0 and ttl_s in (0, {MAX_TTL_S}]")
        faults.set(plan)
        log.warning("%s: fault injection on: %s", service, plan)
        return {"faults": faults.describe()}

    @app.delete("/admin/faults", dependencies=[Depends(require_admin)])
    def delete_faults() -> dict:
        faults.clear()
        return {"faults": None}

    if BY_NAME[service].jobs:
        _job_routes(app, service, ctx, faults, inject_faults, metrics, job_token)
    else:
        _query_routes(app, ctx, inject_faults)
    return app


def _job_routes(app: FastAPI, service: str, ctx: Context, faults: Faults, inject_faults, metrics,
                token: str | None) -> None:
    if token is None:
        raise ValueError(f"{service}: a job service needs its token")
    authenticated = [Depends(require_token(token))]
    spec = JOB_SERVICES[service]
    jobs = Counter("freshpoc_jobs_total", "Jobs that ended, by outcome", ["status"], registry=metrics)
    seconds = Histogram("freshpoc_job_seconds", "How long jobs took", registry=metrics)

    def observe(status: str, took: float) -> None:
        jobs.labels(status).inc()
        seconds.observe(took)

    store = JobStore(ctx.base, service, job_work(service, ctx), delay=faults.job_delay_s, observe=observe,
                     redact=spec.redact)
    app.router.on_shutdown.append(store.shutdown)

    @app.post("/api/v1/jobs", status_code=201, dependencies=authenticated)
    def start_job(body: spec.request_model, response: Response,
                  idempotency_key: str = Header(..., min_length=1, max_length=250),
                  wait_s: Annotated[float, Query(ge=0, le=MAX_START_WAIT_S)] = 0.0) -> dict:
        inject_faults()
        request = body.model_dump()
        try:
            spec.check(ctx, request)
            record, started = store.submit(idempotency_key, request)
        except JobError as exc:
            raise HTTPException(exc.status, exc.message) from None
        if not started:
            response.status_code = 200
        if wait_s and record["status"] == "running":
            record = store.wait(record["job_id"], wait_s)
        return _public(record)

    @app.get("/api/v1/jobs/{job_id}", dependencies=authenticated)
    def job(job_id: str) -> dict:
        record = store.get(job_id) if job_id.startswith(f"{service}-") and job_id.isascii() else None
        if record is None:
            raise HTTPException(404, f"no job {job_id}")
        return _public(record)


def _query_routes(app: FastAPI, ctx: Context, inject_faults) -> None:
    def db():
        conn = ctx.connect_db()
        try:
            yield conn
        finally:
            conn.close()

    Db = Annotated[Any, Depends(db)]

    @app.get("/api/v1/projects/{project}/nodes")
    def nodes(project: str, conn: Db) -> dict:
        inject_faults()
        graph = graph_store.load_graph(conn, project)
        if graph is None:
            raise HTTPException(404, f"no project {project!r} in the graph store")
        return graph

    @app.get("/api/v1/projects/{project}/lineage")
    def node_lineage(project: str, conn: Db, node: Annotated[str, Query(min_length=1, max_length=500)],
                     direction: Annotated[str, Query(pattern="^(upstream|downstream)$")] = "upstream",
                     depth: Annotated[int, Query(ge=1, le=100)] = 10) -> dict:
        inject_faults()
        if not graph_store.node_exists(conn, project, node):
            raise HTTPException(404, f"no node {node!r} in project {project!r}")
        return {"project": project, "node": node, "direction": direction,
                "nodes": graph_store.lineage(conn, project, node, direction, depth)}
