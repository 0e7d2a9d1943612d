#!/usr/bin/env bash
# compose's one-shot init: migrate the Airflow database, then run its arguments, the deployment
# model's airflow-init process (stackctl.ops.airflow_init: the monitoring grant, the platform
# migrations, the admin user and the pools). Its entrypoint has written the admin password's
# file from compose/.env.
set -euo pipefail
airflow db migrate
exec "$@"
