-- What tenant_model_training decided for a tenant (workers/training/selection.py, workers/training/tasks.py):
--   decision         deploy:        the selected model beat popularity and was not worse than the champion
--                    popularity:    too little data to judge a learned model: a popularity model is served
--                    keep_champion: the challenger was worse than the serving version: nothing deployed
--   decision_reason  one readable sentence saying why (the figures are in metrics->'training')
-- status 'champion_kept' is the run's outcome for keep_champion: not a failure, nothing deployed, the serving
-- version (the tenant's row in deploy_state 'live') unchanged. 'success' still means a version went live,
-- a learned one or, with decision 'popularity', a popularity model.
ALTER TABLE model_training_runs
    DROP CONSTRAINT model_training_runs_status_check,
    ADD CONSTRAINT model_training_runs_status_check
        CHECK (status IN ('running', 'success', 'failed', 'superseded', 'champion_kept')),
    ADD COLUMN decision text CHECK (decision IN ('deploy', 'popularity', 'keep_champion')),
    ADD COLUMN decision_reason text;
