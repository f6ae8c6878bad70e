"""Who may talk to the scoring cluster: only holders of its certificates.

A Dask scheduler runs whatever a connected client sends it, and its workers read the
competitions' files: a client that reaches it reads the hidden labels. So the cluster speaks
TLS with client certificates (mutual TLS, Dask's `distributed.security.Security`):

- `competition serve`'s own LocalCluster gets temporary credentials that exist only in the
  serve process's memory (Dask's `Security.temporary()`): nothing outside it can connect,
  on loopback included.
- A named scheduler (workers on other hosts) must be `tls://`, with certificates made by
  `competition cluster-certs DIR` (`make_certificates`): one certificate authority, whose
  key stays with the organizer, and a certificate and key for each role (scheduler, worker,
  portal). Dask checks every peer against the authority: a client without a certificate it
  signed cannot connect. A plain `tcp://` address is accepted on loopback only (a test
  cluster on one machine); anywhere else it is refused, naming the fix.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from competition.errors import CompetitionError

CERTS_ENV = "COMPETITION_DASK_CERTS"
ROLES = ("scheduler", "worker", "portal")
CA_CERT, CA_KEY = "ca.pem", "ca-key.pem"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def cert_files(folder: Path, role: str) -> tuple[Path, Path]:
    """The certificate and the key of `role` in a folder made by `make_certificates`."""
    return folder / f"{role}.pem", folder / f"{role}-key.pem"


def make_certificates(folder: Path, days: int = 365, roles: tuple[str, ...] = ROLES) -> list[Path]:
    """A certificate authority and a certificate per role signed by it, written to `folder`
    (keys readable by their owner only). Returns the files written. Existing files are
    never overwritten: a second run would cut off every host holding the first ones."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    wanted = [folder / CA_CERT, folder / CA_KEY] + [p for r in roles for p in cert_files(folder, r)]
    present = [p.name for p in wanted if p.exists()]
    if present:
        raise CompetitionError(f"{folder} already holds {', '.join(present)}: the cluster's "
                               "certificates are made once (delete the folder to start over, "
                               "then hand the new files to every host)")
    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(days=days)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "competition cluster"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(name("competition cluster CA"))
               .issuer_name(name("competition cluster CA")).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(until)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    written = [_write(folder / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM)),
               _write_key(folder / CA_KEY, ca_key)]
    for role in roles:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(f"competition {role}"))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(until)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                # Every role both serves and connects (workers listen for their peers too).
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = cert_files(folder, role)
        written += [_write(cert_path, cert.public_bytes(serialization.Encoding.PEM)),
                    _write_key(key_path, key)]
    return written


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _write_key(path: Path, key: Any) -> Path:
    from cryptography.hazmat.primitives import serialization

    return _write(path, key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()), 0o600)


def client_security(folder: Path | None) -> Any:
    """The portal's credentials for a named scheduler: from `folder` (made by
    `make_certificates`), else from Dask's own configuration (`distributed.comm.tls.*`);
    None when neither gives a certificate authority and a client certificate."""
    import importlib

    # distributed has no type information: its objects are Any here.
    Security: Any = importlib.import_module("distributed.security").Security
    if folder is not None:
        ca = folder / CA_CERT
        cert, key = cert_files(folder, "portal")
        missing = [p.name for p in (ca, cert, key) if not p.is_file()]
        if missing:
            raise CompetitionError(f"{folder}: {', '.join(missing)} missing (make the "
                                   "cluster's certificates with `competition cluster-certs "
                                   "DIR`)")
        return Security(require_encryption=True, tls_ca_file=str(ca),
                        tls_client_cert=str(cert), tls_client_key=str(key))
    configured = Security()
    if configured.tls_ca_file and configured.tls_client_cert:
        return Security(require_encryption=True, tls_ca_file=configured.tls_ca_file,
                        tls_client_cert=configured.tls_client_cert,
                        tls_client_key=configured.tls_client_key)
    return None


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def checked_address(address: str, security: Any) -> str:
    """`address` if the portal may use it with `security`; else a CompetitionError saying
    why and what to do."""
    scheme, _, rest = address.partition("://")
    if not rest:
        scheme, rest = "tcp", address
    host = urlsplit(f"//{rest}").hostname or ""
    fix = ("make certificates with `competition cluster-certs DIR`, start the scheduler and "
           "the workers with them (see docs/deploy.md) and give `--scheduler tls://HOST:8786 "
           "--cluster-certs DIR`")
    if scheme == "tls":
        if security is None:
            raise CompetitionError(f"the Dask scheduler {address} needs the portal's client "
                                   f"certificate: {fix}")
        return address
    if scheme in ("tcp", "inproc") and is_loopback(host):
        return address
    if scheme == "tcp":
        raise CompetitionError(
            f"refusing the Dask scheduler {address}: plain TCP off loopback lets anyone who "
            f"reaches the port run code on the cluster and read the hidden labels; {fix}")
    raise CompetitionError(f"the Dask scheduler {address}: use tls:// (or tcp:// on "
                           f"loopback only); {fix}")
