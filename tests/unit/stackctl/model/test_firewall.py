"""The firewall table: derived from the deployment model (the documentation's is the fresh render:
test_readme.py)."""

from __future__ import annotations

from stackctl.model import firewall, processes, settings
from stackctl.model.process import BROKER, CONTROLPLANE, DATABASE, MONITORING, WORKERS
from stackctl.render import ansible


def test_nothing_reaches_a_worker_host():
    """Workers serve nothing: no log server, no port any other host or person opens."""
    assert [f for f in firewall.flows(settings.load_source()) if f.destination == WORKERS] == []


def test_workers_reach_the_control_plane_broker_database_monitoring_and_storage_only():
    flows = [f for f in firewall.flows(settings.load_source()) if f.source == WORKERS]
    assert {f.destination for f in flows} == {
        CONTROLPLANE, BROKER, DATABASE, MONITORING, firewall.OBJECT_STORAGE}
    assert firewall.Flow(WORKERS, CONTROLPLANE, "api") in flows  # the execution API
    assert firewall.Flow(WORKERS, MONITORING, "statsd", "udp") in flows


def test_each_flow_ends_where_its_port_is_served():
    source = settings.load_source()
    serving = processes.port_groups(processes.model(source, ansible.ansible_target(source)))
    for flow in firewall.flows(source):
        if flow.destination != firewall.OBJECT_STORAGE:
            assert firewall.group(serving[flow.port]) == flow.destination, flow
            assert flow.source != flow.destination, flow
