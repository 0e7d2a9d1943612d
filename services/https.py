"""uvicorn's own HTTPS options on a service's command line: the deployment model passes the host's
certificate and key where the service serves HTTPS (stackctl/model/services.py https_args)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ssl-certfile", help="serve HTTPS with this certificate (and --ssl-keyfile)")
    parser.add_argument("--ssl-keyfile", help="the certificate's key")


def uvicorn_options(args: argparse.Namespace) -> dict[str, str | None]:
    """uvicorn.run's keyword arguments: plain HTTP where neither option is given."""
    return {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile}
