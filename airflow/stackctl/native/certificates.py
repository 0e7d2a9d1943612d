"""A certificate authority per deployment, and a certificate per host: the keys of TLS between hosts.

A PKI folder holds, each file owner-only and written atomically:

    ca.crt              the CA certificates clients trust: the current CA, then the one it replaced
                        while that is still valid (so a host not yet on its new certificate is trusted)
    ca.key              the current CA's key (absent when the operator signs with a CA of their own)
    ca.cross.pem        the current CA signed by the CA it replaced, while that is valid
    <host>.crt, .key    a host's certificate, for the names and addresses clients reach it by
                        (subjectAltName: verify-full, rediss:// and https check them), then
                        ca.cross.pem when there is one; and its key

`ensure` issues what is missing, expires within the renewal window, names other addresses, or was
signed by another CA; `rotate` re-issues every host's certificate, and with new_ca=True the CA
first. A new CA is cross-signed by the one it replaces, and each host serves that cross-certificate
after its own, as a chain: a client whose ca.crt still holds the old CA alone (a host the rotation
has not reached, or a task started before it) verifies a host that already serves the new
certificate. So a rotation needs no order between hosts and refuses no one. An operator's own CA
(its certificate and key) replaces the generated one. Certificates are EC P-256, serverAuth and
clientAuth. Two runs at once are serialized by a lock on the folder.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from stackctl.errors import StackError
from stackctl.model.monitoring import CERTIFICATE_METRICS
from stackctl.native.secrets import write_private

CA_CERT, CA_KEY, CROSS_CERT = "ca.crt", "ca.key", "ca.cross.pem"
CA_DAYS = 3650
HOST_DAYS = 365
# A host's certificate is re-issued when it has less than this left: well before the
# CertificateExpiresSoon alert (monitoring/prometheus/rules), which fires at 14 days.
RENEW_WITHIN_DAYS = 30
HOST_NAME = re.compile(r"[a-z0-9][a-z0-9.-]*")  # an inventory host name (cp, cp.example.com)
LOCK = ".lock"


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _subject_alt_names(names: list[str]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


_CA_KEY_USAGE = x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False)


def new_authority(deployment: str, days: int = CA_DAYS) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{deployment} CA {now():%Y-%m-%d %H%M%S}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - datetime.timedelta(minutes=5))
            .not_valid_after(now() + datetime.timedelta(days=days))
            # One CA certificate may stand between this CA and a host's: its successor's
            # cross-certificate, during a rotation (cross_sign).
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Authority(cert, key)


def cross_sign(old: Authority, new: Authority) -> x509.Certificate:
    """The new CA's name and key, vouched for by the old CA until the old CA expires: the chain
    host -> new CA (cross) -> old CA verifies for clients that trust only the old one."""
    return (x509.CertificateBuilder().subject_name(new.cert.subject).issuer_name(old.cert.subject)
            .public_key(new.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now() - datetime.timedelta(minutes=5))
            .not_valid_after(min(old.cert.not_valid_after_utc, new.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(new.key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(old.key.public_key()), critical=False)
            .sign(old.key, hashes.SHA256()))


def issue(ca: Authority, host: str, names: list[str], days: int = HOST_DAYS,
          ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and a certificate for a host, valid for its names and addresses, as server and as client."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now() + datetime.timedelta(days=days), ca.cert.not_valid_after_utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now() - datetime.timedelta(minutes=5)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_subject_alt_names(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return key, cert


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes) -> None:
    """Owner-only and atomic (PEM is ASCII): a reader sees the old file or the new one, never half of one."""
    write_private(path, data.decode("ascii"))


def trusted(folder: Path) -> list[x509.Certificate]:
    path = folder / CA_CERT
    return x509.load_pem_x509_certificates(path.read_bytes()) if path.exists() else []


def _load_authority(cert_path: Path, key_path: Path) -> Authority:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise StackError(f"CA {cert_path} / {key_path}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) or _spki(key.public_key()) != \
            _spki(cert.public_key()):
        raise StackError(f"CA {cert_path}: its key {key_path} is not this certificate's")
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    if not constraints.ca:
        raise StackError(f"CA {cert_path}: not a CA certificate (basicConstraints CA:FALSE)")
    return Authority(cert, key)


def _spki(public_key: object) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _authority(folder: Path, deployment: str, own: tuple[Path, Path] | None, new_ca: bool) -> Authority:
    """The CA that signs: the operator's own, the folder's, or a new one (first run, or new_ca). A new
    CA is trusted first, with the CAs it replaces after it while they are valid."""
    if own is not None:
        ca = _load_authority(*own)
        if trusted(folder)[:1] != [ca.cert]:
            _write(folder / CA_CERT, _bundle([ca.cert, *trusted(folder)]))
        return ca
    replaced = _load_authority(folder / CA_CERT, folder / CA_KEY) if (folder / CA_KEY).exists() else None
    if replaced is not None and not new_ca:
        return replaced
    ca = new_authority(deployment)
    # Before the new key and bundle: a run that stops in between leaves the old CA signing.
    if replaced is not None and _path_length(replaced.cert) != 0:  # a CA of pathLen 0 cannot vouch for one
        _write(folder / CROSS_CERT, _bundle([cross_sign(replaced, ca)]))
    else:
        (folder / CROSS_CERT).unlink(missing_ok=True)
    _write(folder / CA_KEY, _pem_key(ca.key))
    _write(folder / CA_CERT, _bundle([ca.cert, *trusted(folder)]))
    return ca


def _path_length(cert: x509.Certificate) -> int | None:
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length


def _chain(folder: Path, ca: Authority) -> list[x509.Certificate]:
    """What a host serves after its own certificate: the cross-certificate of the CA that signs it,
    while that is valid."""
    path = folder / CROSS_CERT
    cross = x509.load_pem_x509_certificates(path.read_bytes()) if path.exists() else []
    return [cert for cert in cross if cert.subject == ca.cert.subject
            and _spki(cert.public_key()) == _spki(ca.cert.public_key()) and cert.not_valid_after_utc > now()]


def _bundle(certs: list[x509.Certificate]) -> bytes:
    """The certificates still valid, each once, in order."""
    kept: list[x509.Certificate] = []
    for cert in certs:
        if cert.not_valid_after_utc > now() and cert not in kept:
            kept.append(cert)
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in kept)


def _needs_issue(folder: Path, host: str, names: list[str], ca: Authority) -> bool:
    cert_path, key_path = folder / f"{host}.crt", folder / f"{host}.key"
    if not (cert_path.exists() and key_path.exists()):
        return True
    cert = load_certificate(folder, host)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    try:
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return True
    return (sans != _subject_alt_names(names)
            or cert.not_valid_after_utc - now() < datetime.timedelta(days=RENEW_WITHIN_DAYS))


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    with (folder / LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure(folder: Path, deployment: str, hosts: dict[str, list[str]], own_ca: tuple[Path, Path] | None = None,
           rotate: bool = False, new_ca: bool = False) -> list[str]:
    """Issue each host's certificate where needed (all of them with rotate); the hosts issued, in order."""
    for host, names in hosts.items():
        if not HOST_NAME.fullmatch(host) or not names:
            raise StackError(f"certificate for {host!r}: a host name of a-z, 0-9, . and - with at least one address")
    with _locked(folder):
        ca = _authority(folder, deployment, own_ca, new_ca)
        chain, issued = _chain(folder, ca), []
        for host, names in hosts.items():
            if rotate or new_ca or _needs_issue(folder, host, names, ca):
                key, cert = issue(ca, host, names)
                # The key first: a reader that finds the new certificate finds its key.
                _write(folder / f"{host}.key", _pem_key(key))
                _write(folder / f"{host}.crt", _bundle([cert, *chain]))
                issued.append(host)
        return issued


def load_certificate(folder: Path, host: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / f"{host}.crt").read_bytes())


def hosts_in(folder: Path) -> dict[str, list[str]]:
    """The hosts the folder has certificates for, with the names and addresses each names."""
    hosts = {}
    for path in sorted(folder.glob("*.crt")):
        if path.name != CA_CERT:
            sans = load_certificate(folder, path.stem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
            hosts[path.stem] = [str(name.value) for name in sans.value]
    return hosts


def parse_host(text: str) -> tuple[str, list[str]]:
    """`NAME=ADDRESS[,NAME...]`, as --host spells a host and what clients reach it by."""
    host, _, names = text.partition("=")
    found = [name.strip() for name in names.split(",") if name.strip()]
    if not HOST_NAME.fullmatch(host) or not found:
        raise ValueError(f"{text!r}: expected HOST=ADDRESS[,NAME...], e.g. cp=10.0.0.5,cp.internal")
    return host, found


# --- expiry, as Prometheus reads it ---------------------------------------------------------------

METRIC = "controlplane_certificate_expiry_timestamp_seconds"
METRICS_FILE = Path(CERTIFICATE_METRICS).name  # in node_exporter's textfile folder


def expiry_metrics(folder: Path) -> str:
    """When each certificate of the folder stops being valid, in Prometheus's text format."""
    lines = [f"# HELP {METRIC} When a TLS certificate of the deployment expires (its notAfter).",
             f"# TYPE {METRIC} gauge"]
    certs = [("ca", cert) for cert in trusted(folder)]
    certs += [(host, load_certificate(folder, host)) for host in hosts_in(folder)]
    for name, cert in certs:
        subject = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value.replace('"', "'")
        lines.append(f'{METRIC}{{certificate="{name}",subject="{subject}"}} {cert.not_valid_after_utc.timestamp():.0f}')
    return "\n".join(lines) + "\n"


def write_expiry_metrics(folder: Path, textfile_dir: Path) -> None:
    textfile_dir.mkdir(parents=True, exist_ok=True)
    _write(textfile_dir / METRICS_FILE, expiry_metrics(folder).encode())
