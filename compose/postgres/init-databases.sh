#!/usr/bin/env bash
# Runs once, on the first start of an empty data volume: the Airflow and platform databases,
# each owned by its own role, with passwords from compose/.env.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres \
    -v airflow_pw="$AIRFLOW_DB_PASSWORD" -v platform_pw="$PLATFORM_DB_PASSWORD" \
    -v monitoring_pw="$MONITORING_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_pw';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE platform LOGIN PASSWORD :'platform_pw';
CREATE DATABASE platform OWNER platform;
-- postgres-exporter's role: statistics, and of Airflow's data only task_instance's queue and state,
-- granted by init/airflow-init.sh once the migration has created the table.
CREATE ROLE monitoring LOGIN PASSWORD :'monitoring_pw';
GRANT pg_monitor TO monitoring;
SQL
