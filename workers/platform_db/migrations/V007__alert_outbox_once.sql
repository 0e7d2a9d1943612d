-- Each alert enters the outbox once per run and state, so a retried send_alert queues nothing again;
-- the next run queues its own copy, which carries its own check's outcome.
ALTER TABLE alert_outbox ADD COLUMN dag_run_id text, ADD COLUMN status text;

-- Rows queued before this migration: only a firing alert has a startsAt, and the run is not recorded,
-- so the check time in the payload (startsAt when firing, endsAt when resolved) stands for it. Every
-- retry of a run queued the same payload, so its copies share that time.
UPDATE alert_outbox SET
    status = CASE WHEN payload ? 'startsAt' THEN 'firing' ELSE 'resolved' END,
    dag_run_id = 'checked at ' || coalesce(payload ->> 'startsAt', payload ->> 'endsAt');

-- Keep one copy of each: a delivered one if any was delivered (the others would page again), else the oldest.
DELETE FROM alert_outbox AS queued USING (
    SELECT id, row_number() OVER (PARTITION BY dag_run_id, alert_key, status
                                  ORDER BY delivered_at IS NULL, id) AS copy
    FROM alert_outbox
) AS copies
WHERE queued.id = copies.id AND copies.copy > 1;

ALTER TABLE alert_outbox
    ALTER COLUMN dag_run_id SET NOT NULL,
    ALTER COLUMN status SET NOT NULL,
    ADD CONSTRAINT alert_outbox_status_check CHECK (status IN ('firing', 'resolved')),
    ADD CONSTRAINT alert_outbox_once UNIQUE (dag_run_id, alert_key, status);
