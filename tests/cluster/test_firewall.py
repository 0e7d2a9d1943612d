"""After the whole suite (this module runs after the DAG runs and the faults), no host's firewall
has dropped a packet: every flow the cluster used is on stackctl.model.firewall's table."""

from __future__ import annotations


def test_no_host_dropped_a_packet_outside_the_firewall_table(deployed):
    dropped = {name: host.dropped() for name, host in deployed.cluster.hosts.items()}
    assert dropped == dict.fromkeys(deployed.cluster.hosts, 0)
