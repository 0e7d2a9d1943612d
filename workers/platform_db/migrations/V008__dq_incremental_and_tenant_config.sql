-- Incremental data quality (workers/dq/summaries.py) and per-tenant DQ configuration (workers/dq/config.py).

-- The transaction that wrote each interaction. The watermark is on it, not on occurred_at (events
-- arrive late, with any event time) nor on interaction_id (ids are taken at insert and committed in
-- another order, so a lower id can become visible after a higher one was summarised): every
-- transaction below the oldest one still running (pg_snapshot_xmin) has ended, so "txid below the
-- fence" is a set that no longer changes. Rows from before this migration have none: the first run
-- per tenant is a full one anyway.
ALTER TABLE user_interactions ADD COLUMN ingest_txid bigint;
ALTER TABLE user_interactions ALTER COLUMN ingest_txid SET DEFAULT pg_current_xact_id()::text::bigint;
-- Rows are appended in transaction order, so a BRIN index finds the new ones in the last pages for a
-- few kilobytes (a btree would cost 20+ bytes a row).
CREATE INDEX user_interactions_ingest_txid ON user_interactions USING brin (ingest_txid);

-- Per tenant: how far its summaries go (interactions with ingest_txid < fence), the duplicate count
-- over all of its history, and whether a change other than an insert asks for a full recount.
CREATE TABLE dq_watermarks (
    tenant_id     text PRIMARY KEY REFERENCES tenants ON DELETE CASCADE,
    fence         bigint,                 -- NULL: never summarised
    duplicates    bigint NOT NULL DEFAULT 0,
    rescan        boolean NOT NULL DEFAULT false,
    refreshed_at  timestamptz
);

-- Per tenant, hour (UTC) and interaction type: what completeness, invalid types and volume read.
CREATE TABLE dq_hourly (
    tenant_id         text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    hour              timestamptz NOT NULL,
    interaction_type  text,
    events            bigint NOT NULL,
    null_users        bigint NOT NULL,
    null_items        bigint NOT NULL,
    first_at          timestamptz NOT NULL,
    last_at           timestamptz NOT NULL,
    CONSTRAINT dq_hourly_key UNIQUE NULLS NOT DISTINCT (tenant_id, hour, interaction_type)
);

-- The same per tenant and type over all history: what completeness and invalid types read, a few
-- rows a tenant however long its history (dq_hourly grows by one row per hour and type).
CREATE TABLE dq_totals (
    tenant_id         text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    interaction_type  text,
    events            bigint NOT NULL,
    null_users        bigint NOT NULL,
    null_items        bigint NOT NULL,
    CONSTRAINT dq_totals_key UNIQUE NULLS NOT DISTINCT (tenant_id, interaction_type)
);

-- Ids that interactions point at and the catalogue lacks, with how many interactions point at each:
-- each run adds the new rows' and drops those the catalogue has gained since.
CREATE TABLE dq_orphans (
    tenant_id     text NOT NULL REFERENCES tenants ON DELETE CASCADE,
    kind          text NOT NULL CHECK (kind IN ('user', 'item')),
    id            bigint NOT NULL,
    interactions  bigint NOT NULL,
    PRIMARY KEY (tenant_id, kind, id)
);

-- Inserts are what the summaries follow; an update or delete of interactions, or of a catalogue key,
-- changes what was already summarised, so the tenant's next run recounts from scratch. The refresh
-- holds dq_watermarks in EXCLUSIVE mode, so a change either lands before it reads the flag or
-- waits and sets the flag after it.
CREATE FUNCTION dq_mark_rescan() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE dq_watermarks SET rescan = true;
    ELSE
        INSERT INTO dq_watermarks (tenant_id, rescan)
        SELECT DISTINCT tenant_id, true FROM changed WHERE tenant_id IN (SELECT tenant_id FROM tenants)
        ON CONFLICT (tenant_id) DO UPDATE SET rescan = true;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION dq_mark_rescan_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dq_watermarks (tenant_id, rescan) SELECT OLD.tenant_id, true
    WHERE EXISTS (SELECT 1 FROM tenants WHERE tenant_id = OLD.tenant_id)
    ON CONFLICT (tenant_id) DO UPDATE SET rescan = true;
    RETURN NULL;
END $$;

CREATE TRIGGER dq_rescan_on_update AFTER UPDATE ON user_interactions
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION dq_mark_rescan();
CREATE TRIGGER dq_rescan_on_delete AFTER DELETE ON user_interactions
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION dq_mark_rescan();
CREATE TRIGGER dq_rescan_on_truncate AFTER TRUNCATE ON user_interactions
    FOR EACH STATEMENT EXECUTE FUNCTION dq_mark_rescan();
CREATE TRIGGER dq_rescan_on_delete AFTER DELETE ON users
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION dq_mark_rescan();
CREATE TRIGGER dq_rescan_on_delete AFTER DELETE ON items
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION dq_mark_rescan();
CREATE TRIGGER dq_rescan_on_key_update AFTER UPDATE ON users FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION dq_mark_rescan_row();
CREATE TRIGGER dq_rescan_on_key_update AFTER UPDATE ON items FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.item_id IS DISTINCT FROM NEW.item_id)
    EXECUTE FUNCTION dq_mark_rescan_row();

-- Every element a lower-case word (no NULLs): what stackctl tenant add --types accepts too.
CREATE FUNCTION dq_type_names_ok(types text[]) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(bool_and(coalesce(t ~ '^[a-z][a-z0-9_]{0,31}$', false)), false) FROM unnest(types) AS t
$$;

-- Per-tenant DQ configuration, changed with SQL and no deploy; a tenant without a row gets the defaults
-- below (today's values). Bad values are refused by the named constraints.
CREATE TABLE dq_tenant_config (
    tenant_id               text PRIMARY KEY REFERENCES tenants ON DELETE CASCADE,
    valid_types             text[] NOT NULL DEFAULT '{view,click,purchase}',
    interactions_max_age_h  double precision NOT NULL DEFAULT 24,
    items_max_age_h         double precision NOT NULL DEFAULT 168,
    training_max_age_h      double precision NOT NULL DEFAULT 24,
    duplicates_max          bigint NOT NULL DEFAULT 0,
    orphans_max             bigint NOT NULL DEFAULT 0,
    invalid_types_max       bigint NOT NULL DEFAULT 0,
    bot_max_per_hour        integer NOT NULL DEFAULT 200,
    volume_z                double precision NOT NULL DEFAULT 3.0,
    -- {"user_interactions.user_id": 99.5, ...}: minimum % of rows with a value, per table.field
    completeness            jsonb NOT NULL DEFAULT '{}',
    -- {"duplicates": "critical", "completeness_title": "info", ...}: per check
    severities              jsonb NOT NULL DEFAULT '{}',
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dq_config_valid_types_are_lowercase_words CHECK (
        cardinality(valid_types) BETWEEN 1 AND 50 AND dq_type_names_ok(valid_types)),
    CONSTRAINT dq_config_max_ages_are_positive CHECK (
        interactions_max_age_h > 0 AND items_max_age_h > 0 AND training_max_age_h > 0),
    CONSTRAINT dq_config_allowed_counts_are_not_negative CHECK (
        duplicates_max >= 0 AND orphans_max >= 0 AND invalid_types_max >= 0),
    CONSTRAINT dq_config_bot_max_per_hour_is_positive CHECK (bot_max_per_hour > 0),
    CONSTRAINT dq_config_volume_z_is_positive CHECK (volume_z > 0),
    CONSTRAINT dq_config_completeness_is_percent_per_table_field CHECK (
        jsonb_typeof(completeness) = 'object'
        AND NOT jsonb_path_exists(completeness, '$.* ? (@.type() != "number" || @ < 0 || @ > 100)')
        AND NOT jsonb_path_exists(completeness, '$.keyvalue() ? (!(@.key like_regex "^[a-z_]+\\.[a-z_]+$"))')),
    CONSTRAINT dq_config_severities_are_info_warning_or_critical CHECK (
        jsonb_typeof(severities) = 'object'
        AND NOT jsonb_path_exists(severities, '$.* ? (@.type() != "string" || (@ != "info" && @ != "warning" && @ != "critical"))'))
);
