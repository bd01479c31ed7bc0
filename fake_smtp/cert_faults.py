"""Certificate faults: a server certificate that fails verification in one precise way, made at start.

Each fault writes the certificate chain the server presents, its key, and `trust.pem`: the CA a client
would be configured to trust. With that file loaded, verification still fails with the fault's OpenSSL
verify code (or, for expiring-soon, passes), exactly as against a real server:

    expired              leaf notAfter in the past              10 certificate has expired
    not-yet-valid        leaf notBefore in the future           9  certificate is not yet valid
    wrong-host           SANs name only wrong-host.invalid      62 hostname mismatch
    self-signed          a self-signed leaf (trust.pem: another CA)   18 self-signed certificate
    untrusted-ca         issued by a CA other than trust.pem    20 unable to get local issuer certificate
    missing-intermediate root -> intermediate -> leaf, served without the intermediate   20
    expiring-soon:DAYS   valid, notAfter in DAYS days           verifies; a checker should warn
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fake_smtp.certs import CertFiles, subject_alt_names

CERT_FAULTS = (
    "expired", "not-yet-valid", "wrong-host", "self-signed", "untrusted-ca", "missing-intermediate",
    "expiring-soon",
)
WRONG_HOST = "wrong-host.invalid"
MAX_EXPIRING_DAYS = 3650
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class FaultyCert:
    files: CertFiles  # what the server presents (chain) and its key
    trust_pem: Path  # what a client would trust


def parse_cert_fault(text: str) -> tuple[str, int | None]:
    """`NAME` or `expiring-soon:DAYS` -> (name, days); ValueError naming the problem."""
    name, colon, days_text = text.strip().partition(":")
    if name not in CERT_FAULTS:
        raise ValueError(f"unknown certificate fault {name!r}; expected one of {', '.join(CERT_FAULTS)}")
    if name != "expiring-soon":
        if colon:
            raise ValueError(f"certificate fault {name!r} takes no argument")
        return name, None
    if not days_text.isdigit() or not 0 <= int(days_text) <= MAX_EXPIRING_DAYS:
        raise ValueError(f"expiring-soon needs whole DAYS (0-{MAX_EXPIRING_DAYS}), e.g. expiring-soon:7")
    return name, int(days_text)


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fake-smtp cert faults"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _build(
    subject: str, issuer: _Issued | None, *, ca: bool, sans: list[x509.GeneralName] | None = None,
    not_before: dt.datetime, not_after: dt.datetime,
) -> _Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.cert.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    signer = issuer.key if issuer else key
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        ).add_extension(x509.SubjectAlternativeName(sans or []), critical=False)
    return _Issued(builder.sign(signer, hashes.SHA256()), key)


def make_faulty_cert(fault: str, hostname: str, directory: Path) -> FaultyCert:
    """Write chain.pem, key.pem (0600) and trust.pem for `fault` (see the module docstring)."""
    name, days = parse_cert_fault(fault)
    now = dt.datetime.now(dt.UTC)
    long_ago, far_ahead = now - 30 * _DAY, now + 365 * _DAY
    root = _build("fake-smtp test root CA", None, ca=True, not_before=long_ago, not_after=far_ahead)
    sans = subject_alt_names(hostname)
    leaf_from = long_ago
    leaf_until = far_ahead
    if name == "expired":
        leaf_from, leaf_until = now - 60 * _DAY, now - _DAY
    elif name == "not-yet-valid":
        leaf_from = now + _DAY
    elif name == "wrong-host":
        sans = [x509.DNSName(WRONG_HOST)]
    elif name == "expiring-soon":
        assert days is not None
        leaf_until = now + days * _DAY + dt.timedelta(hours=1)  # the hour: "in DAYS days" rounds down to DAYS
    issuer = root
    chain: list[x509.Certificate] = []
    trust = root.cert
    if name == "missing-intermediate":
        issuer = _build("fake-smtp test intermediate CA", root, ca=True, not_before=long_ago, not_after=far_ahead)
    if name == "untrusted-ca" or name == "self-signed":
        # The client trusts this CA; the server's certificate has nothing to do with it.
        trust = _build("fake-smtp CA the client trusts", None, ca=True, not_before=long_ago,
                       not_after=far_ahead).cert
    if name == "self-signed":
        leaf = _build(hostname, None, ca=False, sans=sans, not_before=leaf_from, not_after=leaf_until)
    else:
        leaf = _build(hostname, issuer, ca=False, sans=sans, not_before=leaf_from, not_after=leaf_until)
    chain = [leaf.cert]  # missing-intermediate: the intermediate is left out on purpose
    directory.mkdir(parents=True, exist_ok=True)
    chain_path, key_path, trust_path = directory / "chain.pem", directory / "key.pem", directory / "trust.pem"
    chain_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    trust_path.write_bytes(trust.public_bytes(serialization.Encoding.PEM))
    key_bytes = leaf.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    return FaultyCert(CertFiles(chain_path, key_path), trust_path)
