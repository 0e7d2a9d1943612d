"""Side-by-side suites never get the same port: a port another live process claimed is not handed out."""

from __future__ import annotations

import subprocess
import sys

from tests import ports

# Another test process: claims three ports, prints them, and holds them until its stdin closes. (By
# path: a wheel in the environment ships a top-level `tests` package, which pytest's import mode masks.)
HOLDER = ("import runpy, sys; free_ports = runpy.run_path(sys.argv[1])['free_ports'];"
          " print(*free_ports(3), flush=True); sys.stdin.read()")


def test_a_port_claimed_by_another_live_process_is_skipped_until_that_process_exits(monkeypatch):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, ports.__file__], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        held = [int(port) for port in holder.stdout.readline().split()]
        assert len(held) == 3
        # The other process's ports come first in this one's random order: all free to bind (its stack
        # has not started yet), and still not handed out.
        order = ports.random.sample
        monkeypatch.setattr(ports.random, "sample", lambda seq, k: held + [p for p in order(seq, k) if p not in held])
        mine = ports.free_ports(4)
        assert not set(mine) & set(held)
    finally:
        holder.stdin.close()
        holder.wait(10)
    # Its claims ended with it.
    assert set(ports.free_ports(3)) == set(held)


def test_one_process_never_gets_a_port_twice():
    first, second = ports.free_ports(20), ports.free_ports(20)
    assert len(set(first) | set(second)) == 40
