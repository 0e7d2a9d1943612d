"""site.yml over SSH onto the cluster: what it deploys where, and that a second run changes nothing."""

from __future__ import annotations

from .conftest import HOSTS, recap


def test_a_second_run_changes_nothing(deployed):
    result = deployed.play("site.yml")
    changed = {host: counts["changed"] for host, counts in recap(result.stdout).items() if host in HOSTS}
    assert changed == dict.fromkeys(HOSTS, 0), result.stdout[-6000:]


def test_listeners_bind_to_their_hosts_address_or_to_loopback(deployed):
    for host in deployed.cluster.hosts.values():
        wildcard = {(address, port) for address, port in host.listeners()
                    if address not in (host.address, "127.0.0.1", "::1")}
        assert wildcard == set(), f"{host.name} listens beyond its own address and loopback"
