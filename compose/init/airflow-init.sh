#!/usr/bin/env bash
# compose's one-shot init: migrate the Airflow and platform databases, then create the admin
# user and the Airflow pools (arguments: stackctl.airflow_init's, rendered into the compose file).
set -euo pipefail
airflow db migrate
python - <<'PY'
import os

import psycopg2

from workers.platform_db import migrate

conn = psycopg2.connect(host="postgres", dbname="platform", user="platform", password=os.environ["PLATFORM_DB_PASSWORD"])
print("platform migrations applied:", migrate.apply(conn) or "none pending")
conn.close()
PY
# stackctl.airflow_init reads the password from a file, never from its command line.
umask 077
printf '%s' "$ADMIN_PASSWORD" > /tmp/admin_password
exec python -m stackctl.airflow_init "$@"
