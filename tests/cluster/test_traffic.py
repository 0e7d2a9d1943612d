"""Proof by capture: what crossed the bridge between the cluster's hosts during the whole suite, the
deploy, the three DAGs' runs (test_dags.py) and the faults included (tests/cluster/capture.py).

Every TCP connection between two hosts to Redis, PostgreSQL, an HTTPS listener (the api-server,
the monitoring listeners, the inference and FreshPoC services: model/target.HTTPS_PORTS) or the AWS
endpoint (moto's S3 and Secrets Manager) starts with a TLS handshake (PostgreSQL's after its
SSLRequest), and no secret of the deployment, nor any task token, crosses the bridge in the clear.
The listeners between hosts that still speak plain HTTP are listed with the credential they take;
their flows are counted and reported, not refused.
"""

from __future__ import annotations

from collections import Counter

from stackctl.model import firewall, settings
from stackctl.model.listeners import CREDENTIALS
from stackctl.model.target import HTTPS_PORTS

from . import capture
from .conftest import HOSTS, S3_PORT

WORKER_HOSTS = [host for host, groups in HOSTS.items() if any(g.startswith("workers_") for g in groups)]
# The listeners that serve TLS on the cluster: the managed Redis and PostgreSQL, and the HTTPS ones.
TLS_LISTENERS = ("redis", "postgres", *sorted(HTTPS_PORTS))
# Plain flows allowed, by port, and why.
PLAIN_HTTP = "plain HTTP: it does not serve HTTPS yet"


def plain_listeners(source: dict) -> dict[int, tuple[str, str]]:
    """{port: (listener, why)} of the TCP listeners that hosts reach each other on without TLS."""
    between_hosts = {flow.port for flow in firewall.flows(source)
                     if flow.protocol == "tcp" and flow.source != firewall.OPERATORS
                     and flow.destination != firewall.OBJECT_STORAGE}
    return {source["ports"][name]: (name, PLAIN_HTTP) for name in between_hosts - set(TLS_LISTENERS)}


def test_hosts_speak_tls_to_each_other_and_no_secret_crosses_in_the_clear(deployed):
    source = settings.load_source()
    summary = deployed.traffic.stop()
    addresses = {host.address: name for name, host in deployed.cluster.hosts.items()}
    traffic = capture.read(deployed.traffic.path, set(addresses))
    tls_ports = {source["ports"][name]: name for name in TLS_LISTENERS} | {S3_PORT: "aws (S3, Secrets Manager)"}
    plain = plain_listeners(source)

    # The capture saw the DAGs' traffic: each worker host reached Redis and the execution API.
    cp = deployed.cp.address
    reached = {(addresses[flow.client[0]], tls_ports.get(flow.server[1])) for flow in traffic.flows
               if flow.server[0] == cp}
    assert {(worker, port) for worker in WORKER_HOSTS for port in ("redis", "api")} <= reached

    unexplained = [f"{addresses[flow.client[0]]} -> {addresses[flow.server[0]]}:{flow.server[1]}"
                   for flow in traffic.flows if flow.server[1] not in tls_ports and flow.server[1] not in plain]
    tls_flows = [flow for flow in traffic.flows if flow.server[1] in tls_ports and flow.carried_data]
    without_tls = [f"{addresses[flow.client[0]]} -> {addresses[flow.server[0]]}:{tls_ports[flow.server[1]]}: "
                   f"{flow.describe()}" for flow in tls_flows if not flow.starts_with_tls]
    # A plain listener's own credential travels on its flows, as its reason says; nothing else does.
    allowed = {(CREDENTIALS[name].secret, str(port)) for port, (name, _) in plain.items() if name in CREDENTIALS}
    found = capture.cleartext(traffic, deployed.secrets)
    leaked = sorted(f"{name}: {addresses[sender]} -> {addresses[receiver]} (port {port})"
                    for name, sender, receiver, port in found if (name, port) not in allowed)
    print(f"\ntcpdump: {summary.splitlines()[-3:]}")
    print(f"packets between hosts: {traffic.packets}; TCP flows: {len(traffic.flows)}; "
          f"flows to TLS listeners that carried data: {len(tls_flows)}, starting with TLS: "
          f"{sum(f.starts_with_tls for f in tls_flows)}; flows that carried none (refused): "
          f"{sum(not f.carried_data for f in traffic.flows)}")
    print("TLS flows by listener:", dict(Counter(tls_ports[f.server[1]] for f in tls_flows)))
    print("plain flows by listener:", {f"{plain[port][0]} ({plain[port][1]})": count for port, count in
                                       Counter(f.server[1] for f in traffic.flows if f.server[1] in plain).items()})
    print(f"UDP between hosts (StatsD): {sorted({port for _, _, port in traffic.udp})}")
    print(f"secrets found in the clear outside the plain listeners: {len(leaked)}; "
          f"on them: {sorted({name for name, _, _, port in found if (name, port) in allowed})}")
    problems = {"flows to a port with neither TLS nor a reason": unexplained,
                "connections to a TLS listener that did not start with TLS": without_tls,
                "secrets or task tokens in the clear between hosts": leaked}
    found_problems = [f"{what}: {item}" for what, seen in problems.items() for item in seen]
    assert found_problems == [], "\n".join(found_problems)
