-- Results of data_quality_check, one row per run, tenant, table and check: also the history.
CREATE TABLE dq_results (
    dag_run_id   text NOT NULL,
    tenant_id    text NOT NULL,
    table_name   text NOT NULL,
    check_name   text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status       text NOT NULL CHECK (status IN ('pass', 'fail')),
    observed     double precision,
    threshold    double precision,
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    checked_at   timestamptz NOT NULL,
    PRIMARY KEY (dag_run_id, tenant_id, table_name, check_name)
);
CREATE INDEX dq_results_history ON dq_results (tenant_id, table_name, check_name, checked_at DESC);

-- Alerts waiting for Alertmanager. A row leaves the outbox only once Alertmanager accepted it.
CREATE TABLE alert_outbox (
    id            bigserial PRIMARY KEY,
    alert_key     text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      int NOT NULL DEFAULT 0,
    last_error    text,
    delivered_at  timestamptz
);
CREATE INDEX alert_outbox_pending ON alert_outbox (id) WHERE delivered_at IS NULL;
