"""One-shot, idempotent initialisation after `airflow db migrate`, the same on every target.

- the monitoring role may read task_instance's queue and state (stackctl.native.postgres.grant_monitoring);
- the platform database's migrations (workers/platform_db/migrations);
- the admin user and the Airflow pools.

Runs inside the deployment's Airflow environment, as the model's airflow-init process:
`python -m stackctl.ops.airflow_init`. Its databases come from that environment (the metadata
database's URL and the platform_db connection); the admin password is read from its secret
file, so it never appears on a command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def grant_monitoring() -> None:
    """As the airflow database's owner: its tables exist once `airflow db migrate` ran."""
    import psycopg2
    from airflow.configuration import conf
    from sqlalchemy.engine import make_url

    from stackctl.native import postgres

    url = make_url(conf.get("database", "sql_alchemy_conn"))
    conn = psycopg2.connect(host=url.host, port=url.port, dbname=url.database, user=url.username,
                            password=url.password, connect_timeout=10, **url.query)  # with tls, libpq's sslmode
    try:
        postgres.grant_monitoring(conn)
    finally:
        conn.close()


def migrate_platform() -> list[str]:
    from workers import hooks
    from workers.platform_db import migrate

    conn = hooks.platform_db_for_service()
    try:
        return migrate.apply(conn)
    finally:
        conn.close()


def ensure_user(username: str, role_name: str, password: str, email: str) -> bool:
    """Create the user if missing; True when it was created."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        if security.find_user(username=username):
            return False
        role = security.find_role(role_name)
        if role is None:
            raise SystemExit(f"role {role_name!r} does not exist; known roles: {security.get_all_roles()}")
        if not security.add_user(username, username, "user", email, role, password):
            raise SystemExit(f"could not create user {username!r}")
        return True


def ensure_pool(name: str, slots: int, description: str) -> None:
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(name=name, slots=slots, description=description, include_deferred=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user", action="append", default=[], metavar="NAME:ROLE:PASSWORD_FILE")
    parser.add_argument("--pool", action="append", default=[], metavar="NAME:SLOTS:DESCRIPTION")
    args = parser.parse_args()
    grant_monitoring()
    print("monitoring role may read task_instance's queue and state")
    print("platform migrations applied:", ", ".join(migrate_platform()) or "none pending")
    for spec in args.user:
        name, role, password_file = spec.split(":", 2)
        created = ensure_user(name, role, Path(password_file).read_text().strip(), f"{name}@localhost")
        print(f"user {name} ({role}): {'created' if created else 'exists'}")
    for spec in args.pool:
        name, slots, description = spec.split(":", 2)
        ensure_pool(name, int(slots), description)
        print(f"pool {name}: {slots} slots")


if __name__ == "__main__":
    main()
