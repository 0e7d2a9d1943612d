#!/usr/bin/env bash
# compose's one-shot init: migrate the Airflow and platform databases, let the PostgreSQL
# exporter's role read task_instance's queue and state, then run its arguments, the deployment
# model's airflow-init process (stackctl.airflow_init: the admin user and pools).
set -euo pipefail
airflow db migrate
python - <<'PY'
import json
import os

import psycopg2
from sqlalchemy.engine import make_url

from stackctl import postgres
from workers.platform_db import migrate

# task_instance exists now: grant the monitoring role its columns, as the airflow database's owner.
url = make_url(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
db = psycopg2.connect(host=url.host, port=url.port, dbname=url.database, user=url.username, password=url.password)
postgres.grant_monitoring(db)
print(f"{postgres.MONITORING_ROLE} may read", postgres.MONITORING_COLUMNS)
db.close()

# The platform database's connection, as the model hands it to this process.
conn = json.loads(os.environ["AIRFLOW_CONN_PLATFORM_DB"])
db = psycopg2.connect(host=conn["host"], port=conn["port"], dbname=conn["schema"], user=conn["login"],
                      password=conn["password"])
print("platform migrations applied:", migrate.apply(db) or "none pending")
db.close()
PY
# stackctl.airflow_init reads the password from a file, never from its command line.
umask 077
mkdir -p "$(dirname "$ADMIN_PASSWORD_FILE")"
printf '%s' "$ADMIN_PASSWORD" > "$ADMIN_PASSWORD_FILE"
exec "$@"
