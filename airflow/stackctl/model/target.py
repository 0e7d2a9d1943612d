"""A deployment target: where one deployment's components live, and how it spells its secrets.

The native stack, compose and ansible are the targets. Each builds one Target (native/stack.py,
render/compose.py, render/ansible.py); the model (processes.py) and the settings (settings.py)
resolve against it, so a path, an address or a secret is never spelled by a process itself.
Values are plain (native), `${NAME:?...}` references to compose/.env (compose), or Jinja
references to the inventory and the vault (ansible).
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.freshpoc import services as freshpoc_services

NATIVE, COMPOSE, ANSIBLE = "native", "compose", "ansible"
LOOPBACK = "127.0.0.1"
# A host's TLS files under <home>/tls: the CAs its clients trust, and its own certificate and key
# (stackctl certs: native/certificates.py, where a host named "host" has exactly these names).
TLS_CA, TLS_CERT, TLS_KEY = "ca.crt", "host.crt", "host.key"
TLS_HOST = "host"
# The HTTP listeners that serve HTTPS with tls: the api-server (the UI, the REST API, and the execution
# API whose task tokens fetch every connection a task may use), the exporter toolkit's listeners, whose
# --web.config.file takes a tls_server_config beside their basic auth (render/web_auth.py), the
# inference, FreshPoC and on-call inbox services (uvicorn's --ssl-certfile: model/services.py), and
# Flower (its certfile and keyfile options: model/control_plane.py).
HTTPS_PORTS = frozenset({"api", "prometheus", "alertmanager", "pushgateway", "inference", "oncall_inbox", "flower",
                         *(service.conn_id for service in freshpoc_services.SERVICES)})


@dataclass(frozen=True)
class Target:
    kind: str  # NATIVE, COMPOSE or ANSIBLE: which processes run (Process.runs_on)
    home: str  # the deployment's state: data, rendered configuration, logs
    repo: str  # the repository's checkout: dags/, workers/, services/, monitoring/
    dags_folder: str
    hosts: dict[str, str]  # port name -> the address other processes reach it at
    ports: dict[str, int | str]
    secrets: dict[str, str]  # secret name -> its value or a reference to it
    bind_host: str  # the address listeners bind to where other hosts reach them
    bin_dir: str = ""  # prefix of the venv's executables ("" = found on PATH)
    # Ports that no other host reaches, listened on at loopback where bind_host is the address
    # other hosts reach (ansible). Empty where bind_host is loopback (native) or every container
    # must reach every port (compose).
    loopback_ports: frozenset[str] = frozenset()
    # airflow-init sizes the Airflow pools from config.yaml's instances; false where the target
    # sizes them from the instances its hosts run (ansible: controlplane's pools.yml).
    sizes_airflow_pools: bool = True
    # Where a process keeps the files it reads its secrets from ("" = <home>/secrets).
    secrets_dir: str = ""
    # Where a process reads its rendered configuration ("" = home). A container of an upstream
    # image reads it from a read-only mount, apart from its writable state.
    config_dir: str = ""
    # TLS on the connections to the listeners that support it (config.yaml's tls), with the
    # host's files under <home>/tls.
    tls: bool = False

    def exe(self, name: str) -> str:
        return f"{self.bin_dir}/{name}" if self.bin_dir else name

    def port(self, name: str) -> str:
        return str(self.ports[name])

    def bind(self, name: str) -> str:
        """The address the process listening on port `name` binds to."""
        return LOOPBACK if name in self.loopback_ports else self.bind_host

    def listen(self, name: str) -> str:
        return f"{self.bind(name)}:{self.port(name)}"

    @property
    def secrets_folder(self) -> str:
        return self.secrets_dir or f"{self.home}/secrets"

    def secret_file(self, name: str) -> str:
        """Where a secret's file is on every host that holds it."""
        return f"{self.secrets_folder}/{name}"

    def state(self, path: str) -> str:
        """A file or folder a process writes, under home."""
        return f"{self.home}/{path}"

    def config(self, path: str) -> str:
        """A configuration file rendered for a process (by stackctl, the role or compose)."""
        return f"{self.config_dir or self.home}/{path}"

    def tls_file(self, name: str) -> str:
        """TLS_CA, TLS_CERT or TLS_KEY, as this host has it."""
        return f"{self.home}/tls/{name}"

    def scheme(self, port: str) -> str:
        """How a client reaches the HTTP listener on `port`."""
        return "https" if self.tls and port in HTTPS_PORTS else "http"

    @property
    def postgres_tls(self) -> dict[str, str]:
        """libpq's TLS parameters for a client of PostgreSQL: with tls, verify its certificate's CA and
        that it names the host the client dialled (verify-full); without, libpq's default."""
        return {"sslmode": "verify-full", "sslrootcert": self.tls_file(TLS_CA)} if self.tls else {}

    def repo_file(self, path: str) -> str:
        """A file of the repository (monitoring/…), as the host or container sees it."""
        return f"{self.repo}/{path}"
