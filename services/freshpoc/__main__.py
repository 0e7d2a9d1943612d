"""Run one FreshPoC reference service: `python -m services.freshpoc <service> --host H --port P`.

A job service takes the bearer token of its job routes from `--token-file FILE` (services/auth.py).
`--ssl-certfile` and `--ssl-keyfile` serve HTTPS (services/https.py).
The ingestion service also takes what it may read (airflow/config.yaml, freshpoc.ingestion):
`--allowed-root DIR` (repeated), `--max-clone-mb N`, `--clone-timeout-s S`.

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
from workers.freshpoc.confine import Policy
from workers.freshpoc.services import BY_NAME

from .. import https
from ..auth import read_token
from .app import create_app
from .faults import Faults
from .stages import Context


def admin_token() -> str | None:
    path = os.environ.get("FRESHPOC_ADMIN_TOKEN_FILE")
    return read_token(Path(path)) if path else None


def command_line() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service", choices=tuple(BY_NAME))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", type=Path, help="job services: the bearer token of the job routes")
    parser.add_argument("--allowed-root", action="append", default=[], help="ingestion: a folder local "
                        "repositories may be under (repeat for more)")
    parser.add_argument("--max-clone-mb", type=int, help="ingestion: the most a git clone may take on disk")
    parser.add_argument("--clone-timeout-s", type=float, help="ingestion: the longest a git clone may take")
    https.add_arguments(parser)
    return parser


def ingestion_policy(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Policy | None:
    """The ingestion service's rules; each is required, so none has a default apart from config.yaml."""
    if args.service != "ingestion":
        return None
    if not args.allowed_root or args.max_clone_mb is None or args.clone_timeout_s is None:
        parser.error("ingestion needs --allowed-root, --max-clone-mb and --clone-timeout-s "
                     "(airflow/config.yaml, freshpoc.ingestion)")
    return Policy(allowed_roots=tuple(Path(root) for root in args.allowed_root),
                  max_clone_bytes=args.max_clone_mb * 1024 * 1024, clone_timeout_s=args.clone_timeout_s)


def job_token(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """The token of a job service's routes; a service without job routes (query) has none."""
    if not BY_NAME[args.service].jobs:
        return None
    if args.token_file is None:
        parser.error(f"{args.service} needs --token-file: its job routes take no request without the token")
    return read_token(args.token_file)


def main() -> None:
    parser = command_line()
    args = parser.parse_args()
    token = job_token(parser, args)
    context = Context(base=hooks.platform_storage_root(), connect_db=hooks.platform_db_for_service,
                      ingestion=ingestion_policy(parser, args))
    app = create_app(args.service, context, Faults(), admin_token(), token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False, **https.uvicorn_options(args))


if __name__ == "__main__":
    main()
