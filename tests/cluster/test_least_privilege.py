"""A worker host holds the broker's password (Celery's Redis user's) and nothing else secret; it serves nothing.

Every file ansible put on a worker host, and the environment of every process it runs, is read
in full: no other secret of the deployment appears in them (not the Fernet key, the JWT or API
secret, a database password, the admin or Flower password, or the object store's keys).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from stackctl.model.control_plane import TASK_CONNECTIONS

from .conftest import HOSTS

WORKER_HOSTS = [host for host, groups in HOSTS.items() if any(g.startswith("workers_") for g in groups)]
ALLOWED = {"redis_celery_password"}  # the broker's, which is also Celery's result backend


def received(prefix: Path) -> list[Path]:
    return sorted(path for path in prefix.rglob("*") if path.is_file() and not path.is_symlink())


def environments(host) -> dict[int, bytes]:
    found = {}
    for pid in host.pids():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found[pid] = Path(f"/proc/{pid}/environ").read_bytes()
    return found


def test_a_worker_host_holds_no_secret_but_the_brokers(deployed):
    forbidden = {name: value.encode() for name, value in deployed.secrets.items() if name not in ALLOWED}
    for name in WORKER_HOSTS:
        host = deployed.cluster[name]
        files = received(host.prefix)
        assert files, f"nothing deployed on {name}"
        leaks = {(str(path.relative_to(host.prefix)), secret) for path in files
                 for secret, value in forbidden.items() if value in path.read_bytes()}
        leaks |= {(f"pid {pid} environment", secret) for pid, env in environments(host).items()
                  for secret, value in forbidden.items() if value in env}
        assert leaks == set(), f"{name} holds secrets it does not need"
        # The scan reads what it should: the broker's password is there, for the workers.
        broker = deployed.secrets["redis_celery_password"].encode()
        assert any(broker in path.read_bytes() for path in files)
        code = [path for path in files if path.relative_to(host.prefix).parts[0] == "app"]
        print(f"\n{name} holds {len(code)} files of code under app/, and:",
              *(f"  {path.relative_to(host.prefix)}" for path in files if path not in code), sep="\n")


def test_a_worker_host_listens_on_nothing_but_ssh(deployed):
    for name in WORKER_HOSTS:
        host = deployed.cluster[name]
        assert host.listeners() == {(host.address, 22)}, f"{name} serves more than sshd (8793 is Airflow's log server)"


def test_each_host_holds_its_own_key_and_no_other(deployed):
    """The deployment's CA stays on the controller; each host gets its own certificate's key alone."""
    pki = deployed.inventory.parent / "pki"
    keys = {path.stem: path.read_bytes() for path in pki.glob("*.key")}
    assert set(keys) == {*HOSTS, "ca"}
    for name, host in deployed.cluster.hosts.items():
        files = received(host.prefix)
        held = {owner for owner, key in keys.items() for path in files if key in path.read_bytes()}
        assert held == {name}, f"{name} holds the keys of {sorted(held)}"


def test_no_host_keeps_the_tasks_connections_the_api_server_reads_them_from_secrets_manager(deployed):
    for host in deployed.cluster.hosts.values():
        assert list(host.prefix.rglob("connections.json")) == [], host.name
    program = (deployed.cp.prefix / "supervisor" / "conf.d" / "api-server.conf").read_text()
    assert [conn_id for conn_id in TASK_CONNECTIONS if f"AIRFLOW_CONN_{conn_id.upper()}=" in program] == []
    assert "SecretsManagerBackend" in program
