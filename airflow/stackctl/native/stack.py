"""The native stack's state folder: where every file lives, and the deployment target it renders."""

from __future__ import annotations

import json
import os
import pwd
import socket
import ssl
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from stackctl.model import processes, settings
from stackctl.model.process import Process, celery_hostname
from stackctl.model.services import FAULT_INJECTION_SECRET
from stackctl.model.target import NATIVE, TLS_CA, Target

# The unprivileged account that runs PostgreSQL when the stack is started by root
# (PostgreSQL refuses to run as root). `make setup` creates it.
POSTGRES_SYSTEM_USER = "cpstack"
PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin",)
# The state folder of `stackctl` without --home; CONTROLPLANE_HOME moves it.
DEFAULT_HOME = Path(os.environ.get("CONTROLPLANE_HOME", settings.REPO / ".run"))


@dataclass(frozen=True)
class NativeStack:
    home: Path
    source: dict[str, Any]
    ports: dict[str, int]
    # The FreshPoC services' fault-injection routes (tests): on only for a stack started with
    # `stackctl up --fault-injection`, which generates their admin token.
    fault_injection: bool = False
    # TLS on a stack whose config.yaml leaves it off: `stackctl up --tls` (as ansible's hosts joining
    # it need: they always use TLS).
    tls_requested: bool = False

    @classmethod
    def load(cls, home: Path, port_overrides: dict[str, int] | None = None,
             fault_injection: bool = False, tls: bool = False) -> NativeStack:
        """Ports: the source's defaults, then those remembered from an earlier start, then overrides.
        Fault injection and TLS: on if this start or an earlier one asked for it."""
        source = settings.load_source()
        ports = dict(source["ports"])
        remembered = home / "stack.json"
        if remembered.exists():
            state = json.loads(remembered.read_text())
            ports.update(state["ports"])
            fault_injection = fault_injection or state.get("fault_injection", False)
            tls = tls or state.get("tls", False)
        ports.update(port_overrides or {})
        return cls(home=home.resolve(), source=source, ports=ports, fault_injection=fault_injection,
                   tls_requested=tls)

    def remember(self) -> None:
        """Keep this start's ports, fault injection and TLS for the next start and every other command."""
        self.home.mkdir(parents=True, exist_ok=True)
        state = {"ports": self.ports, "fault_injection": self.fault_injection, "tls": self.tls_requested}
        (self.home / "stack.json").write_text(json.dumps(state, indent=2) + "\n")

    @property
    def secret_kinds(self) -> dict[str, str]:
        """The secrets this stack generates: those of config.yaml its processes hold (not compose's
        Grafana and MinIO), without the fault-injection token unless it is on."""
        held = {secret for process in self.processes() for secret in process.secrets}
        return {name: kind for name, kind in self.source["secrets"].items()
                if name in held and (self.fault_injection or name != FAULT_INJECTION_SECRET)}

    def processes(self) -> list[Process]:
        """The model's processes of this stack, with every secret a placeholder: what runs, not how."""
        return processes.of_kind(self.source, NATIVE, list(self.source["secrets"]))

    @property
    def listened_ports(self) -> dict[str, int]:
        """The ports this stack's processes listen on (config.yaml also names compose's own)."""
        listened = {port for process in self.processes() for port in process.listens}
        return {name: port for name, port in self.ports.items() if name in listened}

    # --- paths -------------------------------------------------------------------------
    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def airflow_cfg(self) -> Path:
        return self.airflow_home / "airflow.cfg"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def pg_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "socket"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"

    @property
    def tls_dir(self) -> Path:
        """The native stack's PKI folder (native/certificates.py): its CA and the one host's certificate."""
        return self.home / "tls"

    @property
    def supervisor_conf(self) -> Path:
        return self.home / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.home / "supervisor.sock"

    def secret_path(self, name: str) -> Path:
        return self.secrets_dir / name

    def read_secret(self, name: str) -> str:
        return self.secret_path(name).read_text().strip()

    def program_log(self, program: str) -> Path:
        return self.logs_dir / f"{program}.log"

    # --- system ------------------------------------------------------------------------
    @property
    def venv_bin(self) -> Path:
        return Path(sys.executable).parent

    @cached_property
    def pg_bin(self) -> Path | None:
        for candidate in PG_BIN_CANDIDATES:
            if (Path(candidate) / "postgres").exists():
                return Path(candidate)
        return None

    @property
    def pg_user(self) -> str | None:
        """The account PostgreSQL runs as, or None to run it as the current user."""
        return POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    def pg_user_ids(self) -> tuple[int, int] | None:
        if self.pg_user is None:
            return None
        entry = pwd.getpwnam(self.pg_user)
        return entry.pw_uid, entry.pw_gid

    # --- topology ----------------------------------------------------------------------
    @property
    def bind_host(self) -> str:
        return self.source["bind_host"]

    @property
    def hostname(self) -> str:
        return socket.gethostname()

    def worker_hostnames(self, pool: str) -> list[str]:
        """Celery hostnames of a pool's workers, as passed to `airflow celery worker -H`."""
        count = int(self.source["worker_pools"][pool]["instances"])
        return [celery_hostname(pool, n, self.hostname) for n in range(1, count + 1)]

    @property
    def tls(self) -> bool:
        """config.yaml's tls, which the native stack takes, or `stackctl up --tls`."""
        return self.tls_requested or settings.tls_for(self.source, NATIVE)

    def url(self, component: str) -> str:
        return f"{self.target({}).scheme(component)}://{self.bind_host}:{self.ports[component]}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an HTTP client of the stack verifies an HTTPS listener with: the stack's CA, and no other."""
        if not self.tls:
            return True
        return ssl.create_default_context(cafile=str(self.tls_dir / TLS_CA))

    def target(self, secret_values: dict[str, str]) -> Target:
        return Target(
            kind=NATIVE,
            home=str(self.home),
            # CONTROLPLANE_DAGS_FOLDER: the benchmark runs its own DAGs only.
            dags_folder=os.environ.get("CONTROLPLANE_DAGS_FOLDER", str(settings.REPO / "dags")),
            repo=str(settings.REPO),
            hosts={name: self.bind_host for name in self.ports},
            ports=self.ports,
            secrets=secret_values,
            bind_host=self.bind_host,
            bin_dir=str(self.venv_bin),
            tls=self.tls,
        )
