"""Test hosts on one machine: Linux network namespaces on a bridge, each with its own sshd.

Each host is a network namespace with one veth link to a bridge in the root namespace, an
address from 198.18.0.0/15 (RFC 2544, reserved for network tests) and no route beyond that
subnet, so nothing it sends can leave the machine. Its sshd also runs in a UTS namespace of its
own, so `hostname` (and Celery's %h) is the host's name for every process started over SSH.
The filesystem is shared: each host gets its own prefix folder, which ansible deploys into.

The root namespace holds the controller's address on the bridge: ansible and the tests reach
the hosts from there, as a bastion would.

Only one cluster runs at a time (an flock on LOCK_FILE): the names are fixed, so a cluster
left behind by a killed run is torn down by the next one before it starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "cpt"  # every interface and namespace of the cluster starts with it
BRIDGE = f"{PREFIX}-br"
NETWORK = "198.18.0"  # a /24 inside 198.18.0.0/15
CONTROLLER_ADDRESS = f"{NETWORK}.1"
LOCK_FILE = Path("/run/controlplane-test-cluster.lock")
SSHD = "/usr/sbin/sshd"
UNLISTED = "unlisted"  # the comment of the firewall's counting drop rule


class ClusterUnavailable(RuntimeError):
    """This machine cannot run the cluster (no root, no namespaces, no sshd)."""


def _run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@dataclass
class Host:
    name: str
    address: str
    prefix: Path  # the host's own filesystem root for the deployment
    sshd: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def namespace(self) -> str:
        return f"{PREFIX}-{self.name}"

    @property
    def link(self) -> str:
        """The root side of the host's veth pair: down is a cut cable."""
        return f"{PREFIX}-{self.name}"[:15]

    def exec_argv(self, *argv: str) -> list[str]:
        """argv run inside the host: its network and, once sshd runs, its hostname."""
        if self.sshd is None:
            return ["ip", "netns", "exec", self.namespace, *argv]
        return ["nsenter", f"--target={self.sshd.pid}", "--net", "--uts", *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run(*self.exec_argv(*argv), check=check, timeout=timeout)

    def pids(self) -> list[int]:
        """Every process in the host's network namespace."""
        out = _run("ip", "netns", "pids", self.namespace, check=False).stdout
        return [int(pid) for pid in out.split()]

    def listeners(self) -> set[tuple[str, int]]:
        """(address, port) of every listening TCP socket in the host."""
        out = self.run("ss", "--listening", "--tcp", "--numeric", "--no-header").stdout
        found = set()
        for line in out.splitlines():
            local = line.split()[3]
            address, port = local.rsplit(":", 1)
            found.add((address.strip("[]"), int(port)))
        return found

    def crash(self) -> None:
        """Every process of the host killed at once, sshd included, as a power loss would."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.sshd = None

    def firewall(self, allowed: set[tuple[str, str, int]]) -> None:
        """Inbound: loopback, replies, the controller, and each (source address, protocol, port) allowed.

        Any other connection attempt or datagram is counted by the rules commented UNLISTED, and dropped.
        """
        rules = [f"ip saddr {source} {protocol} dport {port} accept" for source, protocol, port in sorted(allowed)]
        ruleset = "\n".join([
            f"table inet {PREFIX} {{", "  chain input {", "    type filter hook input priority 0; policy drop;",
            "    iif lo accept", "    ct state established,related accept",
            f"    ip saddr {CONTROLLER_ADDRESS} accept", *(f"    {rule}" for rule in rules),
            # A new connection or datagram off the table is counted; a stray segment of a connection
            # closed meanwhile (a host's link back after a cut) is dropped by the policy, uncounted.
            f'    tcp flags & (syn | ack) == syn counter drop comment "{UNLISTED}"',
            f'    meta l4proto udp counter drop comment "{UNLISTED}"', "  }", "}", "",
        ])
        subprocess.run(self.exec_argv("nft", "-f", "-"), input=ruleset, text=True, check=True, capture_output=True)

    def dropped(self) -> int:
        """Connection attempts and datagrams the firewall dropped because no rule allowed them."""
        out = self.run("nft", "list", "chain", "inet", PREFIX, "input").stdout
        return sum(int(re.search(r"packets (\d+)", line)[1]) for line in out.splitlines() if UNLISTED in line)

    def cut(self) -> None:
        _run("ip", "link", "set", self.link, "down")

    def restore(self) -> None:
        _run("ip", "link", "set", self.link, "up")


@dataclass
class Cluster:
    hosts: dict[str, Host]
    workdir: Path
    ssh_key: Path
    known_hosts: Path
    _lock: int = field(default=-1, repr=False)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def teardown(self) -> None:
        """Kill every process of every host, then remove the namespaces and the bridge."""
        _teardown(list(self.hosts))
        if self._lock >= 0:
            os.close(self._lock)


def require_namespaces() -> None:
    if os.geteuid() != 0:
        raise ClusterUnavailable("the cluster tests create network namespaces and need root")
    for tool in ("ip", "nsenter", "unshare", "ss", "ssh", "ssh-keygen", "nft"):
        if shutil.which(tool) is None:
            raise ClusterUnavailable(f"{tool} is not installed (airflow/setup.sh installs it)")
    if not Path(SSHD).exists():
        raise ClusterUnavailable(f"{SSHD} is missing: install openssh-server (airflow/setup.sh does)")
    probe = f"{PREFIX}-probe"
    created = _run("ip", "netns", "add", probe, check=False)
    if created.returncode != 0:
        raise ClusterUnavailable(f"cannot create a network namespace here: {created.stderr.strip()}")
    _run("ip", "netns", "del", probe, check=False)


def _teardown(names: list[str]) -> None:
    namespaces = {line.split()[0] for line in _run("ip", "netns", "list").stdout.splitlines()
                  if line.startswith(f"{PREFIX}-")}
    namespaces |= {f"{PREFIX}-{name}" for name in names}
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        pids = [int(pid) for ns in namespaces
                for pid in _run("ip", "netns", "pids", ns, check=False).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
            time.sleep(0.2)
    for ns in namespaces:
        _run("ip", "netns", "del", ns, check=False)
        # A deleted namespace lives on while the kernel holds sockets of it (connections of a cut
        # host retransmit for minutes), and with it the veth pair: delete the pair from this end,
        # or the next cluster finds its name taken.
        _run("ip", "link", "del", ns, check=False)
    _run("ip", "link", "del", BRIDGE, check=False)


def create(workdir: Path, names: list[str]) -> Cluster:
    """Hosts <name> at 198.18.0.10, .11, ... on one bridge, each with sshd on its own address."""
    require_namespaces()
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise ClusterUnavailable(f"another test cluster runs on this machine (it holds {LOCK_FILE})") from None
    _teardown(names)  # a cluster a killed run left behind
    ssh_dir = workdir / "ssh"
    ssh_dir.mkdir(mode=0o700, parents=True)
    key = ssh_dir / "id_ed25519"
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cluster-controller", "-f", str(key))
    hosts = {name: Host(name, f"{NETWORK}.{10 + n}", workdir / name) for n, name in enumerate(names)}
    cluster = Cluster(hosts, workdir, key, ssh_dir / "known_hosts", lock)
    try:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{CONTROLLER_ADDRESS}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for host in hosts.values():
            _add_host(host)
            _host_key(host, ssh_dir)
        cluster.known_hosts.write_text("".join(_known_host(host, ssh_dir) for host in hosts.values()))
        for host in hosts.values():
            start_sshd(cluster, host)
    except BaseException:
        cluster.teardown()
        raise
    return cluster


def _add_host(host: Host) -> None:
    host.prefix.mkdir(parents=True, exist_ok=True)
    host.prefix.chmod(0o755)
    _run("ip", "netns", "add", host.namespace)
    _run("ip", "link", "add", host.link, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
    _run("ip", "link", "set", host.link, "master", BRIDGE, "up")
    _run("ip", "-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
    _run("ip", "-n", host.namespace, "link", "set", "eth0", "up")
    _run("ip", "-n", host.namespace, "link", "set", "lo", "up")


def _host_key(host: Host, ssh_dir: Path) -> None:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", host.name, "-f", str(ssh_dir / f"host_{host.name}"))


def _known_host(host: Host, ssh_dir: Path) -> str:
    public = (ssh_dir / f"host_{host.name}.pub").read_text().split()
    return f"{host.address} {public[0]} {public[1]}\n"


def start_sshd(cluster: Cluster, host: Host) -> None:
    """sshd on the host's address, with its key and settings; waits until it answers."""
    ssh_dir = cluster.ssh_key.parent
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    options = {
        "ListenAddress": host.address, "HostKey": str(ssh_dir / f"host_{host.name}"),
        "AuthorizedKeysFile": str(cluster.ssh_key.with_suffix(".pub")),
        "PermitRootLogin": "prohibit-password", "PasswordAuthentication": "no", "UsePAM": "no",
        "StrictModes": "no",  # the key files live in the test's temporary folder
        "PidFile": str(ssh_dir / f"sshd_{host.name}.pid"), "MaxStartups": "50", "MaxSessions": "50",
        # As a host's packaged sshd_config has it: without it ansible's copies try sftp, then scp
        # (an sftp client too, since OpenSSH 9), and only then fall back to piping the file.
        "Subsystem": "sftp internal-sftp",
    }
    argv = [SSHD, "-D", "-e", "-f", "/dev/null", *(arg for k, v in options.items() for arg in ("-o", f"{k}={v}"))]
    log = open(ssh_dir / f"sshd_{host.name}.log", "ab")  # noqa: SIM115 - sshd writes it while it runs
    host.sshd = subprocess.Popen(
        ["ip", "netns", "exec", host.namespace, "unshare", "--uts", "sh", "-c",
         'hostname "$0" && exec "$@"', host.name, *argv],
        stdout=log, stderr=log, start_new_session=True,
    )
    log.close()
    _wait_for_ssh(cluster, host)


def _wait_for_ssh(cluster: Cluster, host: Host, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        probe = _run(*ssh_argv(cluster, host, "hostname"), check=False)
        if probe.returncode == 0 and probe.stdout.strip() == host.name:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd on {host.name} ({host.address}) did not answer: {probe.stderr.strip()}")
        time.sleep(0.3)


def ssh_argv(cluster: Cluster, host: Host, *command: str) -> list[str]:
    return ["ssh", "-i", str(cluster.ssh_key), "-o", f"UserKnownHostsFile={cluster.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            f"root@{host.address}", *command]
