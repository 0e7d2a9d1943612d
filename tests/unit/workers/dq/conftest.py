"""A stand-in Alertmanager on loopback, and more connections to a test's platform database."""

import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler

import psycopg2
import pytest


class FakeAlertmanager(socketserver.ThreadingTCPServer):
    """Takes POST /api/v2/alerts and answers `status` after `delay` seconds; keeps every body it was sent."""

    daemon_threads = True

    def __init__(self):  # a plain TCP server: HTTPServer's bind looks the host name up, slowly
        super().__init__(("127.0.0.1", 0), _Handler)
        self.status = 200
        self.delay = 0.0
        self.received: list[list[dict]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/api/v2/alerts"
        self.server.received.append(json.loads(body))
        time.sleep(self.server.delay)
        self.send_response(self.server.status)
        self.end_headers()
        self.wfile.write(b"" if self.server.status == 200 else b"cluster is not ready")

    def log_message(self, *args):
        pass


@pytest.fixture
def alertmanager():
    server = FakeAlertmanager()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def connect(platform_db, platform_pg):
    """Opens another connection to the test's platform database (platform_db); closes them before it goes."""
    opened = []

    def connection():
        opened.append(psycopg2.connect(host=platform_pg.host, port=platform_pg.port, user=platform_pg.user,
                                       dbname=platform_pg.dbname))
        return opened[-1]

    yield connection
    for conn in opened:
        conn.close()
