#!/usr/bin/env bash
# compose's one-shot init: migrate the Airflow and platform databases, then run its arguments,
# the deployment model's airflow-init process (stackctl.airflow_init: the admin user and pools).
set -euo pipefail
airflow db migrate
python - <<'PY'
import json
import os

import psycopg2

from workers.platform_db import migrate

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
