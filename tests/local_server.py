"""An ASGI app served for real on a free loopback port, for tests that need real HTTP (chunked
bodies, closed connections) rather than an in-process test client."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn


@contextmanager
def serving(app, tls: Path | None = None):
    """The app on a real local port (uvicorn in a thread), and a client of it. tls: a folder of
    `stackctl certs` for 127.0.0.1, whose host.crt it serves HTTPS with and whose ca.crt the client trusts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    files = {"ssl_certfile": str(tls / "host.crt"), "ssl_keyfile": str(tls / "host.key")} if tls else {}
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **files))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        verify = ssl.create_default_context(cafile=str(tls / "ca.crt")) if tls else True
        with httpx.Client(base_url=f"{'https' if tls else 'http'}://127.0.0.1:{port}", timeout=10,
                          verify=verify) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
