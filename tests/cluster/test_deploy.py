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
# Each burst task's hold: longer than site.yml takes to reach cp's handlers (about a minute alone,
# three beside the other suites), so the tasks are running when the api-server takes its certificate.
HOLD_S = 240
BURSTS = {"light_burst": "light", "heavy_burst": "heavy"}
# Each worker host's first instance (its supervisor program).
WORKERS = {host: f"worker-{groups[0].removeprefix('workers_')}-1" for host, groups in HOSTS.items()
           if groups[0].startswith("workers_")}


def pid(deployed, host: str, program: str) -> int:
    """A host's supervised program's pid."""
    return int(deployed.supervisorctl(deployed.cluster[host], "pid", program))


def served_certificate(address: str, port: int, trusting: x509.Certificate) -> x509.Certificate:
    """The certificate a listener serves, verified by a client that trusts one CA alone."""
    context = ssl.create_default_context(cadata=trusting.public_bytes(serialization.Encoding.PEM).decode())
    with socket.create_connection((address, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=address) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_certificates_of_a_new_ca_installed_while_tasks_run_lose_no_task(deployed):
    """`stackctl certs rotate --new-ca`, then site.yml, while burst tasks hold a process of each pool.
    The api-server (gunicorn) takes its new certificate on SIGHUP, in new workers forked beside the
    old, so the tasks' heartbeats never find it down; the workers, which serve nothing, keep running:
    a task started before the rotation trusts the old CA alone, and verifies the api-server's new
    certificate through the new CA's cross-certificate. Every task ends green on its first try."""
    pki = deployed.inventory.parent / "pki"
    old_ca = certificates.trusted(pki)[0]
    api = deployed.api()
    api.wait_for_dag(SMOKE)
    api.unpause(SMOKE)
    run_id = api.trigger(SMOKE, {**dict.fromkeys(BURSTS, 2), "burst_hold_seconds": HOLD_S})
    wait_for(lambda: {t["queue"] for t in api.task_instances(SMOKE, run_id)
                      if t["task_id"] in BURSTS and t["state"] == "running"} == set(BURSTS.values()),
             300, "burst tasks running on both pools", poll=0.5)
    before = {(host, program): pid(deployed, host, program) for host, program in
              [("cp", "api-server"), *WORKERS.items()]}
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": f"{settings.REPO}:{settings.REPO / 'airflow'}"}
    subprocess.run([sys.executable, "-m", "stackctl", "certs", "rotate", str(pki), "--new-ca"], env=env,
                   check=True, capture_output=True, text=True)
    result = deployed.play("site.yml")
    played_s = time.monotonic() - started
    new_ca = certificates.trusted(pki)[0]
    assert new_ca != old_ca
    assert all(counts["changed"] > 0 for host, counts in recap(result.stdout).items() if host in HOSTS)

    run = api.wait_for_run(SMOKE, run_id, timeout=600)
    tasks = api.task_instances(SMOKE, run_id)
    assert run["state"] == "success", {(t["task_id"], t["map_index"]): t["state"] for t in tasks}
    assert {(t["task_id"], t["map_index"]): t["try_number"] for t in tasks if t["try_number"] != 1} == {}
    # Nothing restarted: the api-server's master forked a worker on the new certificate while the
    # burst tasks ran, and each worker host's Celery worker still runs the tasks it ran.
    assert {key: pid(deployed, *key) for key in before} == before
    worker = max(psutil.Process(before["cp", "api-server"]).children(), key=psutil.Process.create_time)
    reloaded_at = datetime.fromtimestamp(worker.create_time(), UTC)
    bursts = [t for t in tasks if t["task_id"] in BURSTS]
    spanned = {BURSTS[t["task_id"]] for t in bursts
               if datetime.fromisoformat(t["start_date"]) < reloaded_at < datetime.fromisoformat(t["end_date"])}
    assert spanned == set(BURSTS.values()), f"no task of {set(BURSTS.values()) - spanned} ran across the reload"
    # Every host now holds a certificate of the new CA, and cp's api-server serves its own.
    for host in deployed.cluster.hosts.values():
        x509.load_pem_x509_certificate((host.prefix / "tls" / TLS_CERT).read_bytes()).verify_directly_issued_by(new_ca)
    served = served_certificate(deployed.cp.address, deployed.managed.ports["api"], new_ca)
    assert served == certificates.load_certificate(pki, "cp")
    into_hold = reloaded_at - min(datetime.fromisoformat(t["start_date"]) for t in bursts)
    print(f"\nnew CA: site.yml ran {played_s:.0f}s; the api-server took its new certificate "
          f"{into_hold.total_seconds():.0f}s into the {len(bursts)} burst tasks' {HOLD_S}s hold, with no restart; "
          f"all {len(tasks)} tasks ended on their first try")


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
