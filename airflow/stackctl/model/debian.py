"""Where the model's monitoring programs come from on Debian: one package each.

The model names system programs by their upstream executables (processes.py). Debian's
packages install each as an executable named after the package, and start a service of that
name on install; a deployment runs its own instances instead. The native stack (supervisor.py,
preflight.py) and ansible (targets.py renders the package and executable into each process)
read this table; airflow/setup.sh installs the same packages.
"""

from __future__ import annotations

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


def executable(program: str) -> str:
    """The name Debian installs a program under; a program it does not rename keeps its own."""
    return PACKAGES.get(program, program)
