"""Certificate material for the TLS listeners: a fresh self-signed certificate, or given files.

The certificate is self-signed on purpose (a client that does not trust `ca_pem` fails with OpenSSL's
"self-signed certificate", verify code 18, as it would against a real self-signed server).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# A year: a fresh demo server must not trip the tool's own "expires within 30 days" warning.
VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def subject_alt_names(hostname: str) -> list[x509.GeneralName]:
    """SANs for `hostname` plus the loopback names, without duplicates."""
    names: list[x509.GeneralName] = []
    for name in (hostname, "localhost", "127.0.0.1", "::1"):
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            entry = x509.DNSName(name)
        if entry not in names:
            names.append(entry)
    return names


def write_self_signed(hostname: str, directory: Path) -> CertFiles:
    """Make a self-signed certificate for `hostname` and write cert.pem and key.pem (0600) in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fake-smtp"),
        x509.NameAttribute(NameOID.COMMON_NAME, hostname),
    ])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(subject_alt_names(hostname)), critical=False)
        # CA:TRUE so that OpenSSL accepts the file as a trust anchor when a client loads it as its CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    return CertFiles(cert_path, key_path)


def server_context(files: CertFiles) -> ssl.SSLContext:
    """A server-side context serving `files`; clients are not asked for certificates."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    return context
