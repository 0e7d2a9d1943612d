"""Run one FreshPoC reference service: `python -m services.freshpoc <service> --host H --port P`.

Storage and the platform database come from the Airflow variables and connections the DAGs
use (platform_storage_uri, platform_storage_conn_id, platform_db), read through workers.hooks,
so no URL or secret is on the command line. Fault injection is on only when
FRESHPOC_ADMIN_TOKEN_FILE names a file holding the admin token (see the package docstring).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from workers import hooks

from .app import create_app
from .faults import Faults
from .stages import Context

SERVICES = ("ingestion", "miner", "analyzer", "writer", "query", "reporting")


def admin_token() -> str | None:
    path = os.environ.get("FRESHPOC_ADMIN_TOKEN_FILE")
    if not path:
        return None
    token = Path(path).read_text().strip()
    if not token:
        raise SystemExit(f"FRESHPOC_ADMIN_TOKEN_FILE {path} is empty")
    return token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    context = Context(base=hooks.platform_storage_root(), connect_db=hooks.platform_db_for_service)
    app = create_app(args.service, context, Faults(), admin_token())
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
