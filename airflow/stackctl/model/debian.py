"""The Debian packages a native stack's host needs, and where the model's monitoring programs come from.

The model names system programs by their upstream executables (processes.py). Debian's
packages install each as an executable named after the package, and start a service of that
name on install; a deployment runs its own instances instead. The native stack (supervisor.py,
preflight.py) and ansible (render/ansible.py renders the package and executable into each process)
read this table. airflow/setup.sh installs SYSTEM_PACKAGES and stops DEBIAN_SERVICES: it runs this
file with the system python3 before any virtual environment exists (`python3 <this file> packages`,
or `services`), so it imports the standard library only.
"""

from __future__ import annotations

import sys

# Upstream executable -> the Debian package that installs it (as /usr/bin/<package>).
PACKAGES = {
    "prometheus": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "pushgateway": "prometheus-pushgateway",
    "node_exporter": "prometheus-node-exporter",
    "redis_exporter": "prometheus-redis-exporter",
    "postgres_exporter": "prometheus-postgres-exporter",
    "blackbox_exporter": "prometheus-blackbox-exporter",
}
# The host's other packages -> what needs them.
OTHER_PACKAGES = {
    "postgresql-15": "the stack's own PostgreSQL cluster (stackctl/native/postgres.py)",
    "redis-server": "the stack's own Redis, the Celery broker",
    "util-linux": "prlimit, the heavy pool's memory ceiling",
    "iproute2": "ss, which names what holds a busy port (preflight.py); ip, the test cluster's namespaces",
    "procps": "pgrep, with which the end-to-end tests look for what a stack left running",
    "docker-compose": "only `docker-compose config`, which validates compose/ offline",
    "git": "the FreshPoC ingestion service clones dbt repositories",
    "openssh-server": "the multi-host test cluster: an sshd per network-namespace host (tests/cluster)",
    "nftables": "the test cluster's per-host firewall, from the README's table (tests/cluster)",
    "tcpdump": "the test cluster's capture of its bridge, which proves its traffic is TLS (tests/cluster)",
}
SYSTEM_PACKAGES = (*OTHER_PACKAGES, *PACKAGES.values())
# The services those packages start on install, which the stack replaces with instances of its own
# (and the test cluster with an sshd per host): setup.sh stops and disables them.
DEBIAN_SERVICES = ("ssh", "redis-server", "postgresql", *PACKAGES.values())


def executable(program: str) -> str:
    """The name Debian installs a program under; a program it does not rename keeps its own."""
    return PACKAGES.get(program, program)


if __name__ == "__main__":
    lists = {"packages": SYSTEM_PACKAGES, "services": DEBIAN_SERVICES}
    if len(sys.argv) != 2 or sys.argv[1] not in lists:
        sys.exit(f"usage: {sys.argv[0]} packages|services")
    print(" ".join(lists[sys.argv[1]]))
