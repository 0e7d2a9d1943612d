"""Run the on-call inbox: `python -m services.oncall_inbox --port 9095 --inbox FILE --token-file FILE`."""

import argparse
from pathlib import Path

import uvicorn

from .. import https
from ..auth import read_token
from .app import create_app

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=9095)
parser.add_argument("--inbox", type=Path, required=True)
parser.add_argument("--token-file", type=Path, required=True, help="the bearer token Alertmanager and readers send")
https.add_arguments(parser)
args = parser.parse_args()
uvicorn.run(create_app(args.inbox, read_token(args.token_file)), host=args.host, port=args.port, log_level="warning",
            **https.uvicorn_options(args))
