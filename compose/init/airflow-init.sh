#!/usr/bin/env bash
# compose's one-shot init: migrate the Airflow database, then run its arguments, the deployment
# model's airflow-init process (stackctl.ops.airflow_init: the monitoring grant, the platform
# migrations, the admin user and the pools).
set -euo pipefail
airflow db migrate
# stackctl.ops.airflow_init reads the password from a file, never from its command line.
umask 077
mkdir -p "$(dirname "$ADMIN_PASSWORD_FILE")"
printf '%s' "$ADMIN_PASSWORD" > "$ADMIN_PASSWORD_FILE"
exec "$@"
