"""site.yml over SSH onto the cluster: certificates of a new CA installed while tasks run, losing
none; then a second run that changes nothing; what listens where."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from datetime import UTC, datetime

import psutil
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from stackctl.model import processes, settings
from stackctl.model.secrets import deployed_secrets
from stackctl.model.target import ANSIBLE, LOOPBACK, TLS_CERT
from stackctl.native import certificates
from tests.polling import wait_for

from .conftest import HOSTS, recap

SMOKE = "controlplane_smoke"
# Each burst task's hold: longer than site.yml takes to reach cp's restart (about a minute alone,
# three beside the other suites), so the tasks are running when the api-server restarts.
HOLD_S = 240
BURSTS = {"light_burst": "light", "heavy_burst": "heavy"}
# Each worker host's first instance (its supervisor program).
WORKERS = {host: f"worker-{groups[0].removeprefix('workers_')}-1" for host, groups in HOSTS.items()
           if groups[0].startswith("workers_")}


def started_at(deployed, host: str, program: str) -> tuple[int, datetime]:
    """A host's supervised program: its pid and when it started."""
    pid = int(deployed.supervisorctl(deployed.cluster[host], "pid", program))
    return pid, datetime.fromtimestamp(psutil.Process(pid).create_time(), UTC)


def served_certificate(address: str, port: int, trusting: x509.Certificate) -> x509.Certificate:
    """The certificate a listener serves, verified by a client that trusts one CA alone."""
    context = ssl.create_default_context(cadata=trusting.public_bytes(serialization.Encoding.PEM).decode())
    with socket.create_connection((address, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=address) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_certificates_of_a_new_ca_installed_while_tasks_run_lose_no_task(deployed):
    """`stackctl certs rotate --new-ca`, then site.yml, while burst tasks hold a process of each pool:
    cp's processes restart on their new certificate (the api-server among them, which the tasks
    heartbeat to) and each worker host's in a warm shutdown that waits for its tasks. A task
    started before the rotation trusts the old CA alone, and reaches the restarted api-server
    through the new CA's cross-certificate. Every task ends green on its first try."""
    pki = deployed.inventory.parent / "pki"
    old_ca = certificates.trusted(pki)[0]
    api = deployed.api()
    api.wait_for_dag(SMOKE)
    api.unpause(SMOKE)
    run_id = api.trigger(SMOKE, {**dict.fromkeys(BURSTS, 2), "burst_hold_seconds": HOLD_S})
    wait_for(lambda: {t["queue"] for t in api.task_instances(SMOKE, run_id)
                      if t["task_id"] in BURSTS and t["state"] == "running"} == set(BURSTS.values()),
             300, "burst tasks running on both pools", poll=0.5)
    workers_before = {host: started_at(deployed, host, program)[0] for host, program in WORKERS.items()}
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": f"{settings.REPO}:{settings.REPO / 'airflow'}"}
    subprocess.run([sys.executable, "-m", "stackctl", "certs", "rotate", str(pki), "--new-ca"], env=env,
                   check=True, capture_output=True, text=True)
    result = deployed.play("site.yml")
    played_s = time.monotonic() - started
    new_ca = certificates.trusted(pki)[0]
    assert new_ca != old_ca
    assert all(counts["changed"] > 0 for host, counts in recap(result.stdout).items() if host in HOSTS)

    api = deployed.api()  # the old client's connections ended with the api-server
    run = api.wait_for_run(SMOKE, run_id, timeout=600)
    tasks = api.task_instances(SMOKE, run_id)
    assert run["state"] == "success", {(t["task_id"], t["map_index"]): t["state"] for t in tasks}
    assert {(t["task_id"], t["map_index"]): t["try_number"] for t in tasks if t["try_number"] != 1} == {}
    api_restart = started_at(deployed, "cp", "api-server")[1]
    bursts = [t for t in tasks if t["task_id"] in BURSTS]
    spanned = {BURSTS[t["task_id"]] for t in bursts
               if datetime.fromisoformat(t["start_date"]) < api_restart < datetime.fromisoformat(t["end_date"])}
    assert spanned == set(BURSTS.values()), f"no task of {set(BURSTS.values()) - spanned} ran across the restart"
    # Each worker restarted on its new certificate, after its host's tasks ended: a warm shutdown.
    for host, program in WORKERS.items():
        pid, restarted = started_at(deployed, host, program)
        assert pid != workers_before[host], f"{host}'s worker did not restart"
        assert [t["task_id"] for t in bursts if t["hostname"] == host
                and datetime.fromisoformat(t["end_date"]) > restarted] == [], f"{host} restarted under its tasks"
    # Every host now holds a certificate of the new CA, and cp's api-server serves its own.
    for host in deployed.cluster.hosts.values():
        x509.load_pem_x509_certificate((host.prefix / "tls" / TLS_CERT).read_bytes()).verify_directly_issued_by(new_ca)
    served = served_certificate(deployed.cp.address, deployed.managed.ports["api"], new_ca)
    assert served == certificates.load_certificate(pki, "cp")
    into_hold = api_restart - min(datetime.fromisoformat(t["start_date"]) for t in bursts)
    print(f"\nnew CA: site.yml ran {played_s:.0f}s; the api-server restarted {into_hold.total_seconds():.0f}s "
          f"into the {len(bursts)} burst tasks' {HOLD_S}s hold; all {len(tasks)} tasks ended on their first try")


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
