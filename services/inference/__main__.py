"""Run the inference service: `python -m services.inference --host 127.0.0.1 --port 8090 --token-file F`,
over HTTPS with `--ssl-certfile` and `--ssl-keyfile` (uvicorn's own options).

Storage and Redis come from the Airflow variables and connections the DAGs use
(platform_storage_uri, platform_storage_conn_id, platform_redis_reader), read through workers.hooks,
so both see the same data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from workers import hooks
from workers.training.cache import read_popular

from .. import https
from ..auth import read_token
from .app import create_app
from .models import ModelRegistry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--token-file", type=Path, required=True, help="the bearer token of deploy and cache warm-up")
    https.add_arguments(parser)
    args = parser.parse_args()
    token = read_token(args.token_file)

    registry = ModelRegistry(hooks.platform_storage_root())
    registry.load_current()
    cache = hooks.redis_client(hooks.CACHE_READER_CONN_ID)
    app = create_app(registry, lambda tenant_id: read_popular(cache, tenant_id), token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False,
                **https.uvicorn_options(args))


if __name__ == "__main__":
    main()
