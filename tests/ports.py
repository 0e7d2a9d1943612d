"""Free loopback ports for test stacks, claimed across processes so that side-by-side suites never share one.

A port that binds now may be taken a moment later by another suite's stack that chose it at the
same time (both probe, then both start). Each port this module hands out is also claimed by an
flock on a file of its own in CLAIMS, held until the process that took it exits (the kernel drops
the lock then, however the process ends), and a claimed port is never handed out again.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

# Test stacks take their ports from here up to the kernel's ephemeral range (see free_ports).
EPHEMERAL_FLOOR = 20000
CLAIMS = Path(tempfile.gettempdir()) / "controlplane-test-ports"
_held: list[int] = []  # this process's claim files, open for its lifetime


def _claim(port: int) -> bool:
    """Take the port's claim file, or False when another live process holds it."""
    CLAIMS.mkdir(exist_ok=True)
    fd = os.open(CLAIMS / str(port), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _held.append(fd)
    return True


def _binds(port: int) -> bool:
    # Free for TCP and UDP alike: StatsD listens on UDP.
    with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
        try:
            tcp.bind(("127.0.0.1", port))
            udp.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Free TCP and UDP ports on loopback, below the kernel's ephemeral range, claimed for this process.

    bind(0) hands out a port from that range (net.ipv4.ip_local_port_range), where every
    outgoing connection on the machine also takes its local port: a running stack's own
    connections could take one before the new stack binds it. Below the range only a listener can.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports: list[int] = []
    for port in random.sample(range(EPHEMERAL_FLOOR, low), low - EPHEMERAL_FLOOR):
        if _binds(port) and _claim(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"fewer than {count} free ports between {EPHEMERAL_FLOOR} and {low}")
