"""One-shot, idempotent Airflow initialisation after `airflow db migrate`: the admin user and pools.

Runs inside the stack's Airflow environment: `python -m stackctl.airflow_init`. The admin
password is read from its secret file, so it never appears on a command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path


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
