"""The firewall between a deployment's hosts: which host group opens which port to which.

Derived from the deployment model: a port that a process reaches and a process of another
group listens on is a flow from the reaching group to the listening one. Tasks, and the
processes that use storage, also reach the object store (S3 over HTTPS, outside the model);
people reach the UIs. Worker pools are one group here: every pool reaches the same ports.

The README's multi-host table is this table (render/readme.py; a unit test fails when it
drifts), and the test cluster's hosts drop every inbound packet that is not on it
(tests/cluster/netns.py), so the cluster suite proves the table is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stackctl.model import processes
from stackctl.model.process import WORKERS
from stackctl.model.secrets import deployed_secrets
from stackctl.model.target import ANSIBLE

# StatsD is UDP, and stays plain: Airflow's StatsD client has no TLS, and its datagrams carry metric names
# and numbers only (docs/security.md). Every other port is TCP.
UDP_PORTS = {"statsd"}
OBJECT_STORAGE = "object storage"
OPERATORS = "operators"


@dataclass(frozen=True, order=True)
class Flow:
    source: str  # a host group, or OPERATORS
    destination: str  # a host group, or OBJECT_STORAGE
    port: str  # config.yaml's name of the port; "https" for the object store
    protocol: str = "tcp"


def group(name: str) -> str:
    """The table's name of a host group: the worker pools are one."""
    return WORKERS if name.startswith(f"{WORKERS}_") else name


def flows(source: dict[str, Any]) -> list[Flow]:
    model = processes.of_kind(source, ANSIBLE, deployed_secrets(source))
    serving = processes.port_groups(model)
    found = {Flow(OPERATORS, group(serving[port]), port) for port in processes.PUBLIC_PORTS if port in serving}
    for process in model:
        own = group(process.group)
        for port in process.reaches:
            if group(serving[port]) != own:
                found.add(Flow(own, group(serving[port]), port, "udp" if port in UDP_PORTS else "tcp"))
        if process.uses_storage or process.pool:
            found.add(Flow(own, OBJECT_STORAGE, "https"))
    return sorted(found)
