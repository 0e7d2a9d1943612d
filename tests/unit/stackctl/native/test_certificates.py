"""The deployment's CA and host certificates, checked by real TLS handshakes (Python's ssl, OpenSSL):
a client that trusts the folder's ca.crt accepts a host's certificate for the address it names, and
refuses another CA's, an expired one, and one for another address."""

from __future__ import annotations

import datetime
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families

from stackctl import cli
from stackctl.errors import ConfigError, StackError
from stackctl.model import settings
from stackctl.model.target import TLS_HOST
from stackctl.native import certificates, lifecycle
from stackctl.native.stack import NativeStack

from .conftest import free_port

LOOPBACK = "127.0.0.1"


def handshake(folder, host: str, ca_file, server_hostname: str = LOOPBACK) -> None:
    """A TLS handshake on loopback: the server presents host's certificate, the client trusts ca_file
    and checks the name; ssl.SSLCertVerificationError when it refuses."""
    client_context = ssl.create_default_context(cafile=str(ca_file))
    with tls_server(folder, host) as port, socket.create_connection((LOOPBACK, port), timeout=5) as raw, \
            client_context.wrap_socket(raw, server_hostname=server_hostname):
        pass


def test_a_host_certificate_verifies_for_its_address_and_nothing_else(tmp_path):
    folder = tmp_path / "pki"
    assert certificates.ensure(folder, "test", {"cp": [LOOPBACK, "cp.internal"]}) == ["cp"]
    handshake(folder, "cp", folder / certificates.CA_CERT)
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        handshake(folder, "cp", folder / certificates.CA_CERT, server_hostname="127.0.0.2")
    # Every file is the owner's alone, in a folder that is too.
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.glob("*.*"):
        if path.name != certificates.LOCK:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_client_that_trusts_another_ca_refuses_the_host(tmp_path):
    certificates.ensure(tmp_path / "ours", "ours", {"cp": [LOOPBACK]})
    certificates.ensure(tmp_path / "theirs", "theirs", {"cp": [LOOPBACK]})
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        handshake(tmp_path / "ours", "cp", tmp_path / "theirs" / certificates.CA_CERT)


def issued_days_ago(monkeypatch, days: int) -> None:
    """Certificates issued from now on are issued as if `days` ago."""
    then = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)
    monkeypatch.setattr(certificates, "now", lambda: then)


def test_an_expired_certificate_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "pki"
    certificates.ensure(folder, "test", {"other": [LOOPBACK]})
    issued_days_ago(monkeypatch, certificates.HOST_DAYS + 1)
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]})
    monkeypatch.undo()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        handshake(folder, "cp", folder / certificates.CA_CERT)


def test_a_second_run_issues_nothing_and_renews_what_expires_or_moved(tmp_path, monkeypatch):
    folder = tmp_path / "pki"
    hosts = {"cp": [LOOPBACK], "light-1": ["198.18.0.3"], "heavy-1": ["198.18.0.4"]}
    certificates.ensure(folder, "test", {"heavy-1": hosts["heavy-1"]})
    issued_days_ago(monkeypatch, certificates.HOST_DAYS - certificates.RENEW_WITHIN_DAYS + 1)
    certificates.ensure(folder, "test", {"light-1": hosts["light-1"]})
    monkeypatch.undo()
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]})
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert certificates.ensure(folder, "test", {"cp": [LOOPBACK]}) == []
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    # light-1's expires within the renewal window; heavy-1 now has another address.
    assert certificates.ensure(folder, "test", {**hosts, "heavy-1": ["198.18.0.9"]}) == ["light-1", "heavy-1"]
    assert certificates.hosts_in(folder)["heavy-1"] == ["198.18.0.9"]


def test_a_new_ca_keeps_the_old_one_trusted_so_a_rolling_restart_refuses_no_one(tmp_path):
    folder = tmp_path / "pki"
    certificates.ensure(folder, "test", {"cp": [LOOPBACK], "worker": [LOOPBACK]})
    old = tmp_path / "old"
    old.mkdir()
    for name in ("worker.crt", "worker.key"):
        (old / name).write_bytes((folder / name).read_bytes())  # a host not restarted yet
    old_ca = certificates.trusted(folder)
    assert certificates.ensure(folder, "test", certificates.hosts_in(folder), rotate=True, new_ca=True) == [
        "cp", "worker"]
    bundle = certificates.trusted(folder)
    assert len(bundle) == 2 and bundle[1:] == old_ca
    handshake(folder, "cp", folder / certificates.CA_CERT)
    handshake(old, "worker", folder / certificates.CA_CERT)  # the old certificate, the new bundle
    issuer = certificates.load_certificate(folder, "cp")
    issuer.verify_directly_issued_by(bundle[0])


def test_a_host_on_a_new_cas_certificate_is_trusted_by_clients_that_know_only_the_old_ca(tmp_path):
    """The other half of a rotation with no order between hosts: a client that has not received the
    new bundle (or a task that loaded the old one) verifies the host through the new CA's
    cross-certificate, which the host serves after its own; a client that trusts only the new CA
    verifies it too. OpenSSL's clients here; Go's (Prometheus, the exporters) below."""
    folder = tmp_path / "pki"
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]})
    old_bundle = tmp_path / "old-ca.crt"
    old_bundle.write_bytes((folder / certificates.CA_CERT).read_bytes())
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]}, rotate=True, new_ca=True)
    handshake(folder, "cp", old_bundle)
    new_only = tmp_path / "new-ca.crt"
    new_only.write_bytes(certificates.trusted(folder)[0].public_bytes(serialization.Encoding.PEM))
    handshake(folder, "cp", new_only)
    # A renewal under the same CA keeps serving the chain; a second new CA vouches for itself anew.
    assert certificates.ensure(folder, "test", {"cp": ["127.0.0.2"]}) == ["cp"]
    assert len(x509.load_pem_x509_certificates((folder / "cp.crt").read_bytes())) == 2
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]}, rotate=True, new_ca=True)
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        handshake(folder, "cp", old_bundle)  # two rotations on: the first CA vouches for neither
    handshake(folder, "cp", folder / certificates.CA_CERT)


def test_an_operators_own_ca_signs_and_its_key_stays_theirs(tmp_path):
    own = certificates.new_authority("acme")
    cert_path, key_path = tmp_path / "acme-ca.crt", tmp_path / "acme-ca.key"
    cert_path.write_bytes(own.cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(certificates._pem_key(own.key))
    folder = tmp_path / "pki"
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]}, own_ca=(cert_path, key_path))
    assert not (folder / certificates.CA_KEY).exists()
    handshake(folder, "cp", cert_path)
    other = certificates.new_authority("other")
    key_path.write_bytes(certificates._pem_key(other.key))
    with pytest.raises(StackError, match="is not this certificate's"):
        certificates.ensure(folder, "test", {"cp": [LOOPBACK]}, own_ca=(cert_path, key_path))
    with pytest.raises(StackError, match="not a CA certificate"):
        certificates.ensure(folder, "test", {"cp": [LOOPBACK]}, own_ca=(folder / "cp.crt", folder / "cp.key"))


def test_the_native_stack_signs_with_config_yamls_own_ca_on_every_up(tmp_path):
    own = certificates.new_authority("acme")
    cert_path, key_path = tmp_path / "acme-ca.crt", tmp_path / "acme-ca.key"
    cert_path.write_bytes(own.cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(certificates._pem_key(own.key))
    source = {**settings.load_source(), "tls_ca": {"cert": str(cert_path), "key": str(key_path)}}
    stack = NativeStack(home=tmp_path / "home", source=source, ports=source["ports"])
    lifecycle.render(stack)
    issued = (stack.tls_dir / f"{TLS_HOST}.crt").read_bytes()
    lifecycle.render(stack)  # as every `up` does: the same certificate, still the operator's CA's
    assert (stack.tls_dir / f"{TLS_HOST}.crt").read_bytes() == issued
    assert not (stack.tls_dir / certificates.CA_KEY).exists()
    handshake(stack.tls_dir, TLS_HOST, cert_path)
    with pytest.raises(ConfigError, match="tls_ca: give both cert and key"):
        settings.own_ca({**source, "tls_ca": {"cert": str(cert_path), "key": ""}})


def test_two_runs_at_once_make_one_ca(tmp_path):
    """Serialized by the folder's lock: the second finds the first's CA and certificates."""
    folder = tmp_path / "pki"
    argv = [sys.executable, "-m", "stackctl", "certs", "issue", str(folder), "--host", f"cp={LOOPBACK}",
            "--host", "light-1=198.18.0.3"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{settings.REPO}:{settings.REPO / 'airflow'}"}
    runs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = sorted(run.communicate(timeout=60)[0] for run in runs)
    assert outputs == ["issued: cp, light-1\n", "issued: nothing (every certificate is current)\n"]
    (ca,) = certificates.trusted(folder)
    for host in ("cp", "light-1"):
        certificates.load_certificate(folder, host).verify_directly_issued_by(ca)


def test_expiry_metrics_are_each_certificates_not_after(tmp_path):
    folder = tmp_path / "pki"
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]})
    textfile = tmp_path / "textfile"
    certificates.write_expiry_metrics(folder, textfile)
    (family,) = text_string_to_metric_families((textfile / certificates.METRICS_FILE).read_text())
    found = {sample.labels["certificate"]: sample.value for sample in family.samples}
    not_after = certificates.load_certificate(folder, "cp").not_valid_after_utc
    assert found == {"ca": certificates.trusted(folder)[0].not_valid_after_utc.timestamp(),
                     "cp": round(not_after.timestamp())}
    assert not_after - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=300)


def test_the_command_line_issues_rotates_and_says_what_is_wrong(tmp_path, capsys):
    folder = str(tmp_path / "pki")
    assert cli.main(["certs", "issue", folder, "--host", f"cp={LOOPBACK},cp.internal"]) == 0
    assert capsys.readouterr().out == "issued: cp\n"
    assert cli.main(["certs", "rotate", folder]) == 0
    assert capsys.readouterr().out == "issued: cp\n"
    assert cli.main(["certs", "rotate", str(tmp_path / "empty")]) == 2
    assert "no host certificates to rotate" in capsys.readouterr().err
    assert cli.main(["certs", "issue", folder, "--host", "cp=1.2.3.4", "--ca-cert", folder]) == 2
    assert "--ca-cert and --ca-key go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["certs", "issue", folder, "--host", "cp"])
    assert "expected HOST=ADDRESS" in capsys.readouterr().err
    assert isinstance(x509.load_pem_x509_certificates((tmp_path / "pki" / "ca.crt").read_bytes())[0], x509.Certificate)


@contextmanager
def tls_server(folder, host: str) -> Iterator[int]:
    """A loopback TLS server presenting host's certificate to every client until the block ends: its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / f"{host}.crt", folder / f"{host}.key")
    with socket.create_server((LOOPBACK, 0)) as listener:
        listener.settimeout(0.2)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                    with context.wrap_socket(connection, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    continue  # a timeout, or a client that refused us

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        yield listener.getsockname()[1]
        stop.set()
        server.join(5)


def go_client_verifies(tmp_path, port: int, ca_file) -> bool:
    """Whether a Go TLS client (the blackbox exporter's, as Prometheus's) trusting ca_file verifies the
    server on port: its probe_success."""
    config = tmp_path / "blackbox.yml"
    config.write_text(yaml.safe_dump({"modules": {"tls": {"prober": "tcp", "tcp": {
        "tls": True, "tls_config": {"ca_file": str(ca_file), "server_name": LOOPBACK}}}}}))
    exporter_port = free_port()
    exporter = subprocess.Popen(["prometheus-blackbox-exporter", f"--config.file={config}",
                                 f"--web.listen-address=127.0.0.1:{exporter_port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                metrics = httpx.get(f"http://127.0.0.1:{exporter_port}/probe?module=tls&target={LOOPBACK}:{port}",
                                    timeout=10).text
                break
            except httpx.TransportError:
                assert exporter.poll() is None and time.monotonic() < deadline, "the blackbox exporter did not start"
                time.sleep(0.2)
    finally:
        exporter.terminate()
        exporter.wait(10)
    return "\nprobe_success 1\n" in metrics


def test_go_clients_that_know_only_the_old_ca_verify_a_host_on_the_new_cas_certificate(tmp_path):
    """Go checks the old CA's path length where OpenSSL does not: a generated CA allows the one
    cross-certificate between it and a host."""
    folder = tmp_path / "pki"
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]})
    old_bundle = tmp_path / "old-ca.crt"
    old_bundle.write_bytes((folder / certificates.CA_CERT).read_bytes())
    certificates.ensure(folder, "test", {"cp": [LOOPBACK]}, rotate=True, new_ca=True)
    with tls_server(folder, "cp") as port:
        assert go_client_verifies(tmp_path, port, old_bundle)
        assert go_client_verifies(tmp_path, port, folder / certificates.CA_CERT)
        certificates.ensure(tmp_path / "other", "other", {"cp": [LOOPBACK]})
        assert not go_client_verifies(tmp_path, port, tmp_path / "other" / certificates.CA_CERT)
