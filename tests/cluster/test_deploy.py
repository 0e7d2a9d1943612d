"""site.yml over SSH onto the cluster: what it deploys where, and that a second run changes nothing."""

from __future__ import annotations

from stackctl.model import processes, settings
from stackctl.model.secrets import deployed_secrets
from stackctl.model.target import ANSIBLE, LOOPBACK

from .conftest import HOSTS, recap


def test_a_second_run_changes_nothing(deployed):
    result = deployed.play("site.yml")
    changed = {host: counts["changed"] for host, counts in recap(result.stdout).items() if host in HOSTS}
    assert changed == dict.fromkeys(HOSTS, 0), result.stdout[-6000:]


def test_listeners_bind_to_their_hosts_address_or_to_loopback_where_no_other_host_reaches_them(deployed):
    source = settings.load_source()
    # From the model's flows, not from the target ansible renders with: the test checks that.
    internal = processes.local_ports(processes.of_kind(source, ANSIBLE, deployed_secrets(source)))
    assert {"node_exporter", "statsd_metrics", "scheduler_health"} <= internal
    loopback = {source["ports"][name] for name in internal}
    reached = set(source["ports"].values()) - loopback
    on_cp = set(deployed.cp.listeners())
    assert {(LOOPBACK, port) for port in loopback} <= on_cp, "an internal port is not on cp's loopback"
    for host in deployed.cluster.hosts.values():
        listening = set(host.listeners())
        wildcard = {(address, port) for address, port in listening
                    if address not in (host.address, LOOPBACK, "::1")}
        assert wildcard == set(), f"{host.name} listens beyond its own address and loopback"
        assert {port for address, port in listening if address == host.address} & loopback == set(), host.name
        assert {port for address, port in listening if address != host.address} & reached == set(), host.name
