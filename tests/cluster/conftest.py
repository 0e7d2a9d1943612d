"""A cluster of network-namespace hosts, deployed by ansible's site.yml over real SSH.

Hosts (tests/cluster/netns.py): `cp` runs the control plane, monitoring and the reference
services; `light-1` the light pool; `heavy-1` and `heavy-2` the heavy pool. PostgreSQL, Redis
and moto's server (S3 and Secrets Manager) stand in for managed services: the harness starts them on
`cp`'s address before ansible runs, as a platform team's database, broker and AWS account would
already exist. They serve TLS only, with certificates from the deployment's CA in the inventory's
pki/, from which site.yml issues each host's. The inventory takes the tasks' connections from
Secrets Manager (common_secrets_backend), and the harness keeps an admin user on Redis. tcpdump
records the bridge from before site.yml to the end of the suite (capture.py, test_traffic.py).

The inventory is the shipped example's (ansible/inventories/production): the same groups and
group_vars, with these hosts and a vault of the secrets the managed services were given.
"""

from __future__ import annotations

import json
import os
import re
import secrets as token
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stackctl.model import firewall, settings
from stackctl.model.redis_users import USERS_FILE
from stackctl.model.secrets import STORAGE_SECRETS, deployed_secrets
from stackctl.native import certificates, postgres
from stackctl.native.airflow_api import AirflowApi
from stackctl.native.stack import NativeStack
from stackctl.native.supervisor import Supervisor
from tests.e2e.conftest import API_TIMEOUT_S
from tests.playbook import ANSIBLE
from tests.playbook import run as playbook_run

from . import capture, netns

EXAMPLE_INVENTORY = ANSIBLE / "inventories" / "production"
# Host name -> the example inventory's groups it is in.
HOSTS = {
    "cp": ["controlplane", "monitoring", "database", "broker"],
    "light-1": ["workers_light"],
    "heavy-1": ["workers_heavy"],
    "heavy-2": ["workers_heavy"],
}
# A play's bound: site.yml onto four hosts takes about 4 minutes alone, and took over 15 (past the
# old 900 s) beside the other suites, its many short steps each waiting for a CPU.
PLAY_TIMEOUT_S = 1800
# One task's bound (each try of a retried one): beside the other suites the slowest took under two minutes.
TASK_TIMEOUT_S = 600
# pytest-timeout counts a test's fixture setup too, and the suite's first test sets the cluster up.
TEST_TIMEOUT_S = PLAY_TIMEOUT_S + 900
# moto's standalone server on cp, as the integration tests use: the object storage of platform data,
# model artifacts and task logs (S3), and the tasks' connections and variables (Secrets Manager).
S3_PORT = 9000
BUCKET = "platform"
REGION = "us-east-1"
# The AWS credentials of the hosts' Secrets Manager backend (the vault's) and the controller's publisher.
SECRETS_MANAGER_SECRETS = ("secrets_manager_access_key_id", "secrets_manager_secret_access_key")
# The certificate moto serves, issued from the deployment's CA into a folder of its own, as the
# managed PostgreSQL's and Redis's are (the inventory's pki/ holds the hosts' alone).
AWS_ENDPOINT_CERT = "aws-endpoint"
# The harness's own Redis user (a platform team's admin of its managed Redis): rotates a user's password.
REDIS_ADMIN = "harness"


@dataclass
class Deployed:
    cluster: netns.Cluster
    managed: NativeStack  # PostgreSQL and Redis on cp, as managed services
    inventory: Path
    secrets: dict[str, str]  # the vault's, without the vault_ prefix
    storage_endpoint: str
    start_s: float  # network up to the first site.yml run's end
    traffic: capture.Capture  # every packet between the hosts, from before site.yml (test_traffic.py)

    def play(self, playbook: str, *args: str) -> subprocess.CompletedProcess:
        return run_playbook(self.inventory, playbook, *args, secrets=self.secrets)

    @property
    def ca(self) -> Path:
        return self.inventory.parent / "pki" / certificates.CA_CERT

    def aws(self, service: str):
        """boto3's client of moto's server, verifying its certificate against the deployment's CA."""
        import boto3

        names = STORAGE_SECRETS if service == "s3" else SECRETS_MANAGER_SECRETS
        key_id, secret_key = (self.secrets[name] for name in names)
        return boto3.client(service, endpoint_url=self.storage_endpoint, region_name=REGION, verify=str(self.ca),
                            aws_access_key_id=key_id, aws_secret_access_key=secret_key)

    def redis_admin(self, db: int = 0):
        """The harness's admin connection to a database of cp's Redis, over TLS."""
        import redis

        return redis.Redis(host=self.cp.address, port=self.managed.ports["redis"], db=db, username=REDIS_ADMIN,
                           password=self.secrets["redis_harness_password"], ssl=True,
                           ssl_ca_certs=str(self.ca), decode_responses=True)

    @property
    def cp(self) -> netns.Host:
        return self.cluster["cp"]

    def url(self, port: str) -> str:
        """A listener on cp: https where it serves TLS (the managed stack shares ansible's CA)."""
        return self.managed.url(port)

    def auth(self, secret: str) -> tuple[str, str]:
        """An operator's credentials for a listener: the admin user and the listener's password or token."""
        return self.managed.source["admin_user"], self.secrets[secret]

    def api(self) -> AirflowApi:
        return AirflowApi(self.url("api"), self.managed.source["admin_user"], self.secrets["admin_password"],
                          timeout=API_TIMEOUT_S, verify=self.managed.verify)

    def ssh(self, host: netns.Host, *command: str, timeout: float = 120, check: bool = True,
            ) -> subprocess.CompletedProcess:
        result = subprocess.run(netns.ssh_argv(self.cluster, host, *command), capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == 0 or not check, f"{host.name}: {' '.join(command)}: {result.stdout}{result.stderr}"
        return result

    def supervisorctl(self, host: netns.Host, *args: str, check: bool = True) -> str:
        """supervisorctl of the host's own supervisord, over SSH. Its `status` exits non-zero while
        a program is not running: check=False reads it anyway."""
        conf = host.prefix / "supervisor" / "supervisord.conf"
        return self.ssh(host, f"{Path(sys.executable).parent}/supervisorctl", "-c", str(conf), *args,
                        check=check).stdout

    def boot(self, host: netns.Host) -> None:
        """After a crash: the host's sshd, then its supervisord, as its init system would start them."""
        netns.start_sshd(self.cluster, host)
        self.ssh(host, f"{Path(sys.executable).parent}/supervisord", "-c",
                 str(host.prefix / "supervisor" / "supervisord.conf"))


def run_playbook(inventory: Path, playbook: str, *args: str, secrets: dict[str, str]) -> subprocess.CompletedProcess:
    key_id, secret_key = (secrets[name] for name in SECRETS_MANAGER_SECRETS)
    return playbook_run(inventory, playbook, *args, timeout=PLAY_TIMEOUT_S, env={
        "ANSIBLE_FORKS": str(len(HOSTS)),
        # A task that hangs (a command, an SSH session) fails by name instead of using up the play's bound.
        "ANSIBLE_TASK_TIMEOUT": str(TASK_TIMEOUT_S),
        # The controller's own AWS credentials, with which it publishes the connections.
        "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret_key,
    })


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: {'cp': {'ok': n, 'changed': n, ...}, ...}."""
    return {match[1]: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match[2])}
            for match in re.finditer(r"^(\S+)\s+:\s+(.*)$", output, re.MULTILINE)}


def apply_firewall(cluster: netns.Cluster) -> None:
    """Each host accepts from the others only the flows of stackctl.model.firewall (docs/security.md's table)."""
    source = settings.load_source()
    members: dict[str, set[str]] = {}  # the table's group -> its hosts
    for name, groups in HOSTS.items():
        for group in groups:
            members.setdefault(firewall.group(group), set()).add(name)
    allowed: dict[str, set[tuple[str, str, int]]] = {name: set() for name in HOSTS}
    for flow in firewall.flows(source):
        if flow.source == firewall.OPERATORS:
            continue  # people reach the UIs from the controller's address, which is always allowed
        if flow.destination == firewall.OBJECT_STORAGE:
            destinations, port = {"cp"}, S3_PORT  # the S3-API server stands in for the object store
        else:
            destinations, port = members.get(flow.destination, set()), source["ports"][flow.port]
        for destination in destinations:
            allowed[destination] |= {(cluster[name].address, flow.protocol, port)
                                     for name in members.get(flow.source, set()) if name != destination}
    for name, rules in allowed.items():
        cluster[name].firewall(rules)


def start_managed_services(cp: netns.Host, home: Path, pki: Path, redis_admin_password: str) -> NativeStack:
    """PostgreSQL and Redis on cp's address, with the roles and databases a deployment expects, and
    the harness's admin user on Redis. They serve TLS only, with a certificate from the deployment's
    CA (the PKI folder ansible issues the hosts' certificates from), as a platform team's would come
    from the CA its hosts trust."""
    certificates.ensure(pki, "cluster", {})
    source = {**settings.load_source(), "bind_host": cp.address, "tls": True,
              "tls_ca": {"cert": str(pki / certificates.CA_CERT), "key": str(pki / certificates.CA_KEY)}}
    stack = NativeStack(home=home, source=source, ports=dict(source["ports"]))
    from stackctl.native import lifecycle

    secret_values = lifecycle.render(stack)
    users = stack.secret_path(USERS_FILE)
    users.write_text(users.read_text() + f"user {REDIS_ADMIN} on >{redis_admin_password} ~* &* +@all\n")
    postgres.ensure_cluster(stack, secret_values["postgres_superuser_password"])
    # The other hosts connect over the bridge, over TLS only; initdb's pg_hba.conf admits loopback only.
    hba = stack.pg_data / "pg_hba.conf"
    hba.write_text(hba.read_text() + f"hostssl all all {netns.NETWORK}.0/24 scram-sha-256\n")
    # supervisord, and so PostgreSQL and Redis, run inside cp's namespace.
    cp.run(str(stack.venv_bin / "supervisord"), "-c", str(stack.supervisor_conf))
    supervisor = Supervisor(stack)
    deadline = time.monotonic() + 15
    while not supervisor.is_running():
        assert time.monotonic() < deadline, "the managed services' supervisord did not start"
        time.sleep(0.2)
    for group in ("postgres", "redis"):
        supervisor.start_group(group, wait=True)
    deadline = time.monotonic() + 60
    while not postgres.is_ready(stack, secret_values["postgres_superuser_password"]):
        assert time.monotonic() < deadline, "PostgreSQL on cp did not accept connections"
        time.sleep(0.5)
    postgres.ensure_databases(
        stack, secret_values["postgres_superuser_password"],
        {"airflow": secret_values["airflow_db_password"], "platform": secret_values["platform_db_password"],
         postgres.MONITORING_ROLE: secret_values["monitoring_db_password"]},
    )
    return stack


def start_aws_endpoint(cp: netns.Host, pki: Path, access_key: str, secret_key: str) -> str:
    """moto's server on cp's address over HTTPS, with the platform bucket; returns its endpoint URL."""
    import boto3

    tls = cp.prefix.parent / AWS_ENDPOINT_CERT
    certificates.ensure(tls, "cluster", {AWS_ENDPOINT_CERT: [cp.address]},
                        own_ca=(pki / certificates.CA_CERT, pki / certificates.CA_KEY))
    log = open(cp.prefix.parent / "moto.log", "ab")  # noqa: SIM115 - the server writes it while it runs
    subprocess.Popen(cp.exec_argv(str(Path(sys.executable).parent / "moto_server"), "-H", cp.address,
                                  "-p", str(S3_PORT), "--ssl-cert", str(tls / f"{AWS_ENDPOINT_CERT}.crt"),
                                  "--ssl-key", str(tls / f"{AWS_ENDPOINT_CERT}.key")),
                     stdout=log, stderr=log, start_new_session=True)
    log.close()
    endpoint = f"https://{cp.address}:{S3_PORT}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, verify=str(pki / certificates.CA_CERT),
                          aws_access_key_id=access_key, aws_secret_access_key=secret_key)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            return endpoint
        except Exception:  # noqa: BLE001 - botocore's connection errors, until the server listens
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def write_inventory(cluster: netns.Cluster, secrets: dict[str, str], storage_endpoint: str, folder: Path) -> Path:
    """The example inventory's layout and group_vars, with the cluster's hosts and a vault."""
    shutil.copytree(EXAMPLE_INVENTORY / "group_vars", folder / "group_vars")
    example = yaml.safe_load((EXAMPLE_INVENTORY / "hosts.yml").read_text())

    def place(group: dict) -> None:
        if "hosts" in group:
            group["hosts"] = {}
        for child in (group.get("children") or {}).values():
            place(child)

    def find(group: dict, name: str) -> dict | None:
        for child_name, child in (group.get("children") or {}).items():
            if child_name == name:
                return child
            if (found := find(child, name)) is not None:
                return found
        return None

    place(example["all"])
    for host, groups in HOSTS.items():
        for group in groups:
            find(example["all"], group)["hosts"][host] = None
    (folder / "hosts.yml").write_text(yaml.safe_dump(example, sort_keys=False))
    # Host variables: they win over the example's group_vars/all (systemd, /opt/controlplane).
    connection = {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(cluster.ssh_key),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={cluster.known_hosts} -o StrictHostKeyChecking=yes",
        # A host's own Python, not the controller's.
        "ansible_python_interpreter": "/usr/bin/python3",
        "common_service_manager": "supervisor",
        "common_source_dir": str(settings.REPO),
        # The repository's environment, already installed from the lock: no copy per host. Its
        # interpreter lives under /root, so the processes run as root here; a real host creates
        # the environment from requirements.lock and runs them as the airflow account.
        "common_venv": str(Path(sys.executable).parent.parent),
        "common_user": "root",
        # Several hosts share one object store: models the workers write, logs the api-server reads.
        "common_storage_uri": f"s3://{BUCKET}",
        "common_storage_endpoint_url": storage_endpoint,
        "common_secrets_backend": "secrets_manager",
        "common_secrets_manager_endpoint_url": storage_endpoint,
        "common_aws_endpoints_use_deployment_ca": True,
    }
    host_vars = folder / "host_vars"
    host_vars.mkdir()
    for host in cluster.hosts.values():
        (host_vars / f"{host.name}.yml").write_text(yaml.safe_dump(
            {"ansible_host": host.address, "common_prefix": str(host.prefix), **connection}))
    vault = folder / "group_vars" / "all" / "vault.yml"
    fd = os.open(vault, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        deployed = [*deployed_secrets(settings.load_source()), *STORAGE_SECRETS, *SECRETS_MANAGER_SECRETS]
        json.dump({f"vault_{name}": value for name, value in secrets.items() if name in deployed}, f)
    return folder / "hosts.yml"


def pytest_collection_modifyitems(items):
    """Room for the cluster's setup in whichever cluster test comes first (an explicit timeout wins)."""
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent) and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


@pytest.fixture(scope="session")
def deployed():
    workdir = Path(tempfile.mkdtemp(prefix="cp-cluster-"))
    workdir.chmod(0o755)
    started = time.monotonic()
    try:
        cluster = netns.create(workdir, list(HOSTS))
    except netns.ClusterUnavailable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"cannot build the test cluster: {exc}")
    traffic = None
    try:
        apply_firewall(cluster)
        traffic = capture.start(workdir / "bridge.pcap")
        inventory_dir, pki = workdir / "inventory", workdir / "inventory" / "pki"
        harness = {"redis_harness_password": token.token_urlsafe(24)}
        managed = start_managed_services(cluster["cp"], workdir / "managed", pki, *harness.values())
        secrets = {name: managed.read_secret(name) for name in managed.secret_kinds} | harness
        secrets |= {name: token.token_urlsafe(24) for name in (*STORAGE_SECRETS, *SECRETS_MANAGER_SECRETS)}
        endpoint = start_aws_endpoint(cluster["cp"], pki, *(secrets[name] for name in STORAGE_SECRETS))
        inventory = write_inventory(cluster, secrets, endpoint, inventory_dir)
        run_playbook(inventory, "site.yml", secrets=secrets)
        deployed = Deployed(cluster, managed, inventory, secrets, endpoint, time.monotonic() - started, traffic)
        print(f"\ncluster up (namespaces, managed services, site.yml over SSH) in {deployed.start_s:.0f}s")
        yield deployed
    finally:
        if traffic is not None:
            traffic.stop()
        cluster.teardown()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def seeded(deployed, storage_connection) -> list[str]:
    """The demo tenants in cp's platform database and their training data in the S3 bucket."""
    from stackctl.demo import seed
    from workers import storage

    conn = postgres.connect(deployed.managed, deployed.secrets["platform_db_password"], user="platform",
                            dbname="platform")
    try:
        end_us = int(time.time() // 3600 * 3600 * 1_000_000)
        return seed.seed(conn, storage.root(f"s3://{BUCKET}", storage_connection), end_us)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def storage_connection(deployed):
    """The cluster's object storage as an Airflow connection of this test process; returns its id."""
    access_key, secret_key = (deployed.secrets[name] for name in STORAGE_SECRETS)
    conn_id = "cluster_storage"
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps({
        "conn_type": "aws", "login": access_key, "password": secret_key,
        "extra": {"endpoint_url": deployed.storage_endpoint, "region_name": REGION},
    })
    # s3fs takes no `verify` from the connection: AWS's own variable names the CA, as on the hosts.
    os.environ["AWS_CA_BUNDLE"] = str(deployed.ca)
    yield conn_id
    os.environ.pop(f"AIRFLOW_CONN_{conn_id.upper()}", None)
    os.environ.pop("AWS_CA_BUNDLE", None)
