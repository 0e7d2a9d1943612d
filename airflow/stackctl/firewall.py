"""The firewall between a deployment's hosts: which host group opens which port to which.

Derived from the deployment model: a port that a process reaches and a process of another
group listens on is a flow from the reaching group to the listening one. Tasks, and the
processes that use storage, also reach the object store (S3 over HTTPS, outside the model);
people reach the UIs. Worker pools are one group here: every pool reaches the same ports.

The documentation's firewall table is this table (`python -m stackctl render readme` writes it
into whichever page holds it, stackctl/readme.py; a unit test fails when it drifts), and the test
cluster's hosts drop every inbound packet that is not on it (tests/cluster/netns.py), so the
cluster suite proves the table is enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from typing import Any

from . import processes, targets

UDP_PORTS = {"statsd"}  # StatsD is UDP; every other port is TCP
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
    return processes.WORKERS if name.startswith(f"{processes.WORKERS}_") else name


def flows(source: dict[str, Any]) -> list[Flow]:
    model = processes.model(source, targets.ansible_layout(source))
    serving = processes.port_groups(model)
    found = {Flow(OPERATORS, group(serving[port]), port) for port in processes.OPERATOR_PORTS}
    for process in model:
        own = group(process.group)
        for port in process.reaches:
            if group(serving[port]) != own:
                found.add(Flow(own, group(serving[port]), port, "udp" if port in UDP_PORTS else "tcp"))
        if process.uses_storage or process.pool:
            found.add(Flow(own, OBJECT_STORAGE, "https"))
    return sorted(found)


def markdown(source: dict[str, Any]) -> str:
    ports = source["ports"]

    def spelled(flow: Flow) -> str:
        if flow.port not in ports:
            return "443 (S3)"
        return f"{flow.port} {ports[flow.port]}" + ("/udp" if flow.protocol == "udp" else "")

    rows = ["| from | to | ports |", "|---|---|---|"]
    for (src, dst), same in groupby(flows(source), key=lambda f: (f.source, f.destination)):
        rows.append(f"| {src} | {dst} | {', '.join(spelled(flow) for flow in same)} |")
    return "\n".join(rows) + "\n"
