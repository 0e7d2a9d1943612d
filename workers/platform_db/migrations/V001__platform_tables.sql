-- The Embedding Recommender platform's tables. Tenant ids are strict slugs everywhere.
CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY CHECK (tenant_id ~ '^[a-z][a-z0-9-]{1,62}$'),
    name        text NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    tenant_id   text NOT NULL REFERENCES tenants,
    user_id     bigint NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE items (
    tenant_id   text NOT NULL REFERENCES tenants,
    item_id     bigint NOT NULL,
    title       text,
    category    text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, item_id)
);

-- No foreign keys to users or items: events arrive before their catalogue rows do, and the
-- data-quality DAG reports orphans instead of the database refusing the events.
CREATE TABLE user_interactions (
    interaction_id   bigserial PRIMARY KEY,
    tenant_id        text NOT NULL REFERENCES tenants,
    user_id          bigint,
    item_id          bigint,
    interaction_type text,
    weight           real NOT NULL DEFAULT 1.0,
    occurred_at      timestamptz NOT NULL
);
CREATE INDEX user_interactions_tenant_time ON user_interactions (tenant_id, occurred_at);

CREATE TABLE model_training_runs (
    dag_run_id      text NOT NULL,
    tenant_id       text NOT NULL REFERENCES tenants,
    status          text NOT NULL CHECK (status IN ('running', 'success', 'failed')),
    stage           text,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    model_version   text,
    metrics         jsonb NOT NULL DEFAULT '{}'::jsonb,
    failure_reason  text,
    PRIMARY KEY (dag_run_id, tenant_id)
);
CREATE INDEX model_training_runs_tenant_time ON model_training_runs (tenant_id, started_at DESC);
