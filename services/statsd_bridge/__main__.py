"""Run the bridge: `python -m services.statsd_bridge --mapping FILE --udp-port 9125 --metrics-port 9102`."""

import argparse
import logging
from pathlib import Path

from prometheus_client import CollectorRegistry

from .mapping import Mapper
from .server import Bridge, serve_http

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--udp-port", type=int, default=9125)
parser.add_argument("--metrics-host", help="the metrics endpoint's address (default: --host)")
parser.add_argument("--metrics-port", type=int, default=9102)
parser.add_argument("--mapping", type=Path, required=True)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO)
registry = CollectorRegistry()
bridge = Bridge(Mapper.load(args.mapping), registry)
serve_http(bridge, args.metrics_host or args.host, args.metrics_port)
bridge.serve_udp(args.host, args.udp_port)
