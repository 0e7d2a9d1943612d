"""FreshPoC reference services: small HTTP services that do FreshPoC_E2E's real work.

Run one per process: `python -m services.freshpoc <service> --host H --port P [--token-file F]`, for each
service of workers/freshpoc/services.py, which says which have job routes and which use the platform
database (ports freshpoc_<service> in airflow/config.yaml; the native stack supervises them, compose
runs the same command lines).

Job services (every one but query)
    Their job routes need the service's token (`--token-file`, services/auth.py): `Authorization:
    Bearer <token>`, or basic auth with the token as password (the stages' HTTP connections).
    POST /api/v1/jobs            body {"run_key": "<one path segment: [A-Za-z0-9_-], single dots
                                 between them, at most 160>", ...}; ingestion also takes
                                 {"repository": "/path" | "file:///path" | "<https or ssh git URL>"}:
                                 a local one only under freshpoc.ingestion.allowed_roots
                                 (config.yaml), no symlink leaving it, a clone within max_clone_mb
                                 and clone_timeout_s; credentials in the URL are never stored or
                                 returned (workers/freshpoc/confine.py). A refusal is a 422 naming
                                 the rule, at submission or as the job's error.
                                 Header `Idempotency-Key` (the DAG run id) is required.
                                 Query `wait_s` (0–5, default 0): answer once the job has ended, or
                                 after wait_s seconds with it still running; a short job's outcome
                                 then comes in this one answer.
                                 201: a job started; 200: the job this key already has (running,
                                 succeeded, or failed on its input), never started twice.
                                 A job that failed with a 5xx error starts again (runs += 1).
                                 409: the key was used for a different body; 422: bad input.
    GET  /api/v1/jobs/{job_id}   {"job_id", "status": running|succeeded|failed, "runs", "result",
                                 "error": {"status", "message"} | null}; 404 if unknown.
    Job records live in object storage (freshpoc/jobs/<service>/), so idempotency survives a
    restart; a job cut short by a restart reads as failed with status 503 and runs again.

Query service
    GET /api/v1/projects/{project}/nodes                        the stored graph (nodes, edges)
    GET /api/v1/projects/{project}/lineage?node=&direction=upstream|downstream&depth=1..100

Every service
    GET /health                  {"service", "status": "ok", "faults": <active plan> | null}
    GET /metrics                 Prometheus: freshpoc_requests_total and freshpoc_request_seconds by
                                 endpoint; job services also freshpoc_jobs_total by status and
                                 freshpoc_job_seconds
    Bad input gets 422 with {"detail": "<what is wrong>"}.

Failure injection (tests, and the fault-injection suite)
    PUT    /admin/faults   {"fail_503_times": N, "reject_400": "<message>", "response_delay_s": s,
                            "job_delay_s": s, "ttl_s": s (default 600, at most 3600)}
    GET    /admin/faults   the active plan, with fail_503_left and expires_in_s
    DELETE /admin/faults   clear it
    Faults apply to job submissions (POST /api/v1/jobs) and query requests, never to /health or
    GET /api/v1/jobs/...: reject_400 answers 400 with the message; fail_503_times answers the
    next N with 503; response_delay_s delays each answer; job_delay_s makes each started job
    wait before it works (a slow service).
    Gating: the admin routes answer 404 unless the service was started with
    FRESHPOC_ADMIN_TOKEN_FILE naming a file with a token, and 401 without
    `Authorization: Bearer <token>`. The native stack sets it to its secret file
    secrets/freshpoc_admin_token (0600); a production deployment leaves it unset. A plan lives
    in memory only and expires after ttl_s; while one is active /health shows it and every
    injected fault is logged as a warning, so it cannot stay on silently.
"""
