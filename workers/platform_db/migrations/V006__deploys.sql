-- Deploys of tenant_model_training (workers/training/deploys.py) journaled on the run's row, so a
-- crash or retry never loses what production held before, and an older run never replaces a newer one.
--   deploy_order             the run's data_interval_end (run_after without one): newer deploys win
--   deploy_previous_version  the live version when this deploy started, recorded before the pointer flip
--   deploy_state             flipping: the pointer names this version or deploy_previous_version (in doubt
--                                      until the attempt ends; a retry resumes from the recorded state)
--                            live: production serves it (at most one row per tenant)
--                            replaced: was live or flipping, then another run went live
--                            rolled_back: its health check failed; the pointer went back to the previous
--                            superseded: production already held a newer run's version; left alone
-- status 'superseded' is the run's outcome then: not a failure, and nothing deployed.
ALTER TABLE model_training_runs
    DROP CONSTRAINT model_training_runs_status_check,
    ADD CONSTRAINT model_training_runs_status_check
        CHECK (status IN ('running', 'success', 'failed', 'superseded')),
    ADD COLUMN deploy_order timestamptz,
    ADD COLUMN deploy_previous_version text,
    ADD COLUMN deploy_state text
        CHECK (deploy_state IN ('flipping', 'live', 'replaced', 'rolled_back', 'superseded'));

CREATE UNIQUE INDEX model_training_runs_one_live ON model_training_runs (tenant_id) WHERE deploy_state = 'live';

-- Deploys made before this migration: the pointer names the latest successful run's version (a failed
-- deploy put the pointer back), and its start is the closest known stand-in for its data interval's end.
UPDATE model_training_runs AS run SET deploy_state = 'live', deploy_order = run.started_at
FROM (SELECT DISTINCT ON (tenant_id) tenant_id, dag_run_id FROM model_training_runs
      WHERE status = 'success' ORDER BY tenant_id, finished_at DESC NULLS LAST) AS latest
WHERE run.tenant_id = latest.tenant_id AND run.dag_run_id = latest.dag_run_id;
