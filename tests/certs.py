"""Certificate material for tests: files a real TLS server loads, and the PEM a client should trust.

Every factory writes into the given directory under a fresh name, so one `tmp_path` can hold several.
CA-issued certificates come from trustme; the self-signed leaf is built with cryptography because trustme
always issues from a CA.
"""

from __future__ import annotations

import ipaddress
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1")
DAY = timedelta(days=1)


@dataclass(frozen=True)
class CertFiles:
    cert_path: Path  # leaf first, then any intermediates (PEM)
    key_path: Path  # the leaf's private key (PEM, unencrypted)
    ca_pem: str | None  # PEM a client should trust; for unknown_ca, a DIFFERENT CA than the issuer

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    @property
    def leaf_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes()).public_bytes(
            serialization.Encoding.DER
        )


def ca_issued(
    tmp: Path,
    hostnames: Sequence[str] = DEFAULT_HOSTNAMES,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    ca: trustme.CA | None = None,
) -> CertFiles:
    """A leaf issued by `ca` (a fresh trustme CA by default); ca_pem is that CA."""
    issuer = ca if ca is not None else trustme.CA()
    leaf = issuer.issue_cert(*hostnames, not_before=not_before, not_after=not_after)
    cert_path, key_path = _paths(tmp, "ca-issued")
    cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key_path))
    return CertFiles(cert_path, key_path, issuer.cert_pem.bytes().decode("ascii"))


def self_signed(
    tmp: Path, hostnames: Sequence[str] = DEFAULT_HOSTNAMES, *, days: int = 30, common_name: str | None = None
) -> CertFiles:
    """A leaf that signs itself; ca_pem is the leaf, so a client trusting it verifies the chain. Its CN is the
    first host name unless `common_name` says otherwise (any text: the hostile-output tests plant some)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cn = common_name if common_name is not None else (hostnames[0] if hostnames else "self-signed")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_general_name(h) for h in hostnames]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = _paths(tmp, "self-signed")
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return CertFiles(cert_path, key_path, cert_pem.decode("ascii"))


def expired(
    tmp: Path, hostnames: Sequence[str] = DEFAULT_HOSTNAMES, *, ca: trustme.CA | None = None
) -> CertFiles:
    now = datetime.now(UTC)
    return ca_issued(tmp, hostnames, not_before=now - timedelta(days=90), not_after=now - DAY, ca=ca)


def not_yet_valid(
    tmp: Path, hostnames: Sequence[str] = DEFAULT_HOSTNAMES, *, ca: trustme.CA | None = None
) -> CertFiles:
    now = datetime.now(UTC)
    return ca_issued(tmp, hostnames, not_before=now + DAY, not_after=now + timedelta(days=90), ca=ca)


def expiring_soon(
    tmp: Path, hostnames: Sequence[str] = DEFAULT_HOSTNAMES, *, days: int = 10, ca: trustme.CA | None = None
) -> CertFiles:
    now = datetime.now(UTC)
    return ca_issued(tmp, hostnames, not_before=now - DAY, not_after=now + timedelta(days=days), ca=ca)


def wrong_host(tmp: Path, *, ca: trustme.CA | None = None) -> CertFiles:
    """A valid, trusted certificate for "other.example" only: neither localhost nor any IP."""
    return ca_issued(tmp, ("other.example",), ca=ca)


def unknown_ca(tmp: Path, hostnames: Sequence[str] = DEFAULT_HOSTNAMES) -> CertFiles:
    """Issued by a CA the client never gets: ca_pem is another CA, so trusting it must still fail."""
    issued = ca_issued(tmp, hostnames)
    return CertFiles(issued.cert_path, issued.key_path, trustme.CA().cert_pem.bytes().decode("ascii"))


def _paths(tmp: Path, label: str) -> tuple[Path, Path]:
    stem = f"{label}-{uuid.uuid4().hex[:12]}"
    return tmp / f"{stem}.cert.pem", tmp / f"{stem}.key.pem"


def _general_name(identity: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(identity))
    except ValueError:
        return x509.DNSName(identity)
