"""Certificates and TLS errors, as the tls stage needs them.

Python 3.11 cannot hand over an unverified chain, so the tls stage shakes hands twice: once verifying
(`client_context(verify=True)`), keeping any `ssl.SSLCertVerificationError`, and once without verifying
(`client_context(verify=False)`) to read the leaf with `getpeercert(binary_form=True)`. This module names the
failure (`trust_kind`, `handshake_kind`) from OpenSSL's own codes and describes the leaf
(`describe_certificate`) from the certificate itself, never from guesswork. One exception reads the chain the
server sent (`unverified_chain`, private in 3.11, public from 3.13): only to say how a given CA file relates
to it (`ca_file_relation`), never to judge trust. What OpenSSL decides in the
verifying handshake (chain trust, the host name match, the dates) is never decided again here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import re
import ssl
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from diag.kinds import TlsKind
from diag.server_text import ServerText

# cryptography is imported where a certificate is described (or a bad CA bundle explained), not here: a
# plaintext run needs none of it, and the import costs a `smtp-diag check` ~15 ms of start-up (issue 13).
if TYPE_CHECKING:
    from cryptography import x509

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h); stable across OpenSSL 1.1 and 3.x.
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: Final = 2
X509_V_ERR_CERT_NOT_YET_VALID: Final = 9
X509_V_ERR_CERT_HAS_EXPIRED: Final = 10
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: Final = 18
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: Final = 19
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: Final = 20
X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: Final = 21
X509_V_ERR_HOSTNAME_MISMATCH: Final = 62
X509_V_ERR_IP_ADDRESS_MISMATCH: Final = 64

_TRUST_KIND_BY_CODE: Final[dict[int, TlsKind]] = {
    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: TlsKind.SELF_SIGNED,
    X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: TlsKind.SELF_SIGNED,
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: TlsKind.UNKNOWN_ISSUER,
    X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: TlsKind.UNKNOWN_ISSUER,
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: TlsKind.UNKNOWN_ISSUER,
    X509_V_ERR_HOSTNAME_MISMATCH: TlsKind.HOSTNAME_MISMATCH,
    X509_V_ERR_IP_ADDRESS_MISMATCH: TlsKind.HOSTNAME_MISMATCH,
    X509_V_ERR_CERT_HAS_EXPIRED: TlsKind.EXPIRED,
    X509_V_ERR_CERT_NOT_YET_VALID: TlsKind.NOT_YET_VALID,
}

# What OpenSSL says when the bytes after our ClientHello are not a TLS record: the peer speaks plaintext
# (an SMTP greeting, an HTTP response), as ssl.SSLError.reason.
_PLAINTEXT_REASONS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
     "HTTPS_PROXY_REQUEST"}
)

_EXPIRY_WARNING_DAYS: Final = 30
# Names in a certificate are the server's words: a CN may hold a line break, a Markdown heading or an
# escape sequence. They are described cleaned, like every other server text (diag.server_text).
_NAME_TEXT: Final = ServerText()
_MAX_DESCRIBED_SANS: Final = 100


def client_context(*, ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    """A client context: verifying against the system CAs plus `ca_bundle` (PEM text), or not verifying.

    Both variants start from `ssl.create_default_context()` so that the second, non-verifying handshake
    negotiates the same protocol versions and ciphers as the first. Contexts are cached: loading the system
    CA store takes ~17 ms of CPU on the event loop (measured in bench/engine.py), and an SSLContext is safe
    to share between connections. The cache is small and bounded; a bad bundle is never cached.
    """
    key = (ca_bundle if verify else None, verify)
    context = _CONTEXTS.get(key)
    if context is not None:
        return context
    # Built in threads (client_context_async, prepare): one at a time, so a second caller waits for the
    # first's context instead of loading the system store again, and the cache is never mutated twice at once.
    with _BUILD_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            context = _build_context(*key)
            if len(_CONTEXTS) >= _CONTEXT_CACHE_SIZE:
                _CONTEXTS.pop(next(iter(_CONTEXTS)), None)  # the oldest: bounded, whatever bundles people send
            _CONTEXTS[key] = context
    return context


def prepare(ca_bundle: str | None) -> None:
    """Start getting ready, in a thread, for this run's first TLS handshake and certificate description:
    the verifying context (the system CA store, ~17 ms of CPU) and cryptography's import (~15 ms). A run
    calls it when it starts; by the time STARTTLS comes, a real network's round trips (connect, greeting,
    EHLO) have hidden both (issue 13). Nothing to do, and no thread, when a long-running process has both.

    Not a daemon thread: a run that fails before TLS may end first, and the process then waits for the
    bounded remainder of the import rather than tearing an import down mid-way at exit."""
    if (ca_bundle, True) in _CONTEXTS and "cryptography.x509" in sys.modules:
        return
    # One thread per bundle at a time: `check` prepares before it imports the engine and the run prepares
    # again when it starts, and a service's first wave of runs all start before the first thread is done.
    # A second thread would only wait for the first one's locks (the build lock, the import lock).
    with _PREPARING_LOCK:
        if ca_bundle in _PREPARING:
            return
        _PREPARING.add(ca_bundle)
    threading.Thread(target=_prepare, args=(ca_bundle,), name="diag-tls-prepare").start()


def _prepare(ca_bundle: str | None) -> None:
    try:
        with contextlib.suppress(ValueError):  # an unusable bundle: the config stage says so, in words
            client_context(ca_bundle=ca_bundle, verify=True)
        import cryptography.x509  # noqa: F401 - imported for describe_certificate, ahead of its first use
        from cryptography.hazmat.primitives import hashes  # noqa: F401
    finally:
        with _PREPARING_LOCK:
            _PREPARING.discard(ca_bundle)


_PREPARING: set[str | None] = set()  # bundles a prepare thread is working on (bounded by the runs in flight)
_PREPARING_LOCK: Final = threading.Lock()


@functools.lru_cache(maxsize=32)  # the same bundle comes with every run of a configuration
def ca_bundle_problem(pem: str) -> str | None:
    """Why `pem` is no usable CA bundle, in words for the person who pasted it; None when it is one."""
    if not pem.isascii():
        return "PEM is ASCII text; this has other characters in it"
    try:  # OpenSSL, which will use it, accepts it: every certificate block parses and there is one at least
        _load_alone(pem)
        return None
    except (ssl.SSLError, ValueError):
        pass  # say why in words: cryptography tells a damaged block from no block at all
    from cryptography import x509

    try:
        found = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except ValueError:
        return "a -----BEGIN CERTIFICATE----- block in it is not a certificate (cut short or altered?)"
    try:
        _load_alone(pem)
    except (ssl.SSLError, ValueError) as exc:
        return f"OpenSSL cannot use it as trusted certificates ({exc})"
    return None if found else "it has no PEM certificate"


def _load_alone(pem: str) -> None:
    """Load `pem` as trusted certificates into a context of its own, without the system store (which
    costs ~17 ms of CPU to load and says nothing about the bundle); raises what OpenSSL says."""
    ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=pem)


async def client_context_async(*, ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    """client_context, built off the event loop when it is not cached yet: a first use of a CA bundle parses
    PEM and loads the system store (~17 ms of CPU), which must not stall every other run in flight. A cached
    one is returned at once (a thread hop per run measurably slowed the engine)."""
    cached = _CONTEXTS.get((ca_bundle if verify else None, verify))
    if cached is not None:
        return cached
    return await asyncio.to_thread(client_context, ca_bundle=ca_bundle, verify=verify)


_CONTEXT_CACHE_SIZE: Final = 16
_CONTEXTS: dict[tuple[str | None, bool], ssl.SSLContext] = {}
_BUILD_LOCK: Final = threading.Lock()


def _build_context(ca_bundle: str | None, verify: bool) -> ssl.SSLContext:
    directory = lazy_trust_directory(ssl.get_default_verify_paths())
    # With a directory, OpenSSL reads a CA when a chain needs it; otherwise it parses the whole system bundle
    # up front (~20 ms of CPU, under the GIL in Python 3.11) even for a context that verifies nothing.
    context = ssl.create_default_context(capath=directory) if directory else ssl.create_default_context()
    if not verify:
        context.check_hostname = False  # must come before CERT_NONE, or ssl refuses
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cadata=ca_bundle)
        except (ssl.SSLError, ValueError, TypeError) as exc:
            raise ValueError(f"the CA bundle is not usable PEM certificate text: {exc}") from exc
    return context


def lazy_trust_directory(paths: ssl.DefaultVerifyPaths) -> str | None:
    """The system's hashed CA directory, when it holds every CA of the system bundle file; else None.

    OpenSSL's default trust is a bundle file plus a directory of certificates named by subject hash
    (`openssl rehash`; Debian's update-ca-certificates writes both from the same list). The file is parsed
    whole when a context is made; the directory is read lazily, one issuer per lookup. So a context that
    trusts the directory alone trusts the same CAs and costs ~1 ms instead of ~20 ms of CPU (issue 13: the
    start-up of `smtp-diag check`). Only when the two are the distribution's pair: the file in use (after
    SSL_CERT_FILE) is OpenSSL's own default, and the directory has at least as many hash links as the file has
    certificates. A bundle of one's own, another layout or a file edited by hand is loaded whole, as always.
    """
    if not paths.capath:
        return None
    bundle = b""
    if paths.cafile:  # None when there is no file: OpenSSL then has the directory alone too
        if os.path.realpath(paths.cafile) != os.path.realpath(paths.openssl_cafile):
            return None
        try:
            with open(paths.cafile, "rb") as file:
                if os.fstat(file.fileno()).st_size > _MAX_SYSTEM_BUNDLE_BYTES:
                    return None  # not counted here: let OpenSSL load it as it always would
                bundle = file.read()  # (a read with a limit would allocate the whole limit at once)
        except OSError:
            return None
    try:
        links = sum(1 for name in os.listdir(paths.capath) if _HASH_LINK.fullmatch(name))
    except OSError:
        return None
    return paths.capath if links and links >= bundle.count(b"-----BEGIN CERTIFICATE-----") else None


_HASH_LINK: Final = re.compile(r"[0-9a-f]{8}\.[0-9]+")  # what `openssl rehash` names a CA: subject hash, index
_MAX_SYSTEM_BUNDLE_BYTES: Final = 16 * 1024 * 1024


def trust_kind(err: ssl.SSLCertVerificationError) -> TlsKind:
    """Which trust failure OpenSSL reported, by its verify code (the ssl module always sets it)."""
    return _TRUST_KIND_BY_CODE.get(err.verify_code, TlsKind.UNTRUSTED)


def trust_detail(err: ssl.SSLCertVerificationError) -> dict[str, Any]:
    """OpenSSL's own words: 18 (self-signed leaf) and 19 (self-signed root in a chain) stay distinct here."""
    return {"verify_code": err.verify_code, "verify_message": err.verify_message}


def handshake_kind(err: BaseException) -> TlsKind:
    """"not_tls" when the peer answered our ClientHello in plaintext; "handshake_failed" for anything else."""
    plaintext = (
        isinstance(err, ssl.SSLError)
        and not isinstance(err, ssl.SSLCertVerificationError)
        and str(err.reason).upper() in _PLAINTEXT_REASONS
    )
    return TlsKind.NOT_TLS if plaintext else TlsKind.HANDSHAKE_FAILED


def expiry_warning_days() -> int:
    """A valid certificate that expires within this many days earns a warning."""
    return _EXPIRY_WARNING_DAYS


def connection_facts(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> dict[str, Any]:
    """Negotiated protocol and cipher of an established TLS connection."""
    cipher = ssl_object.cipher()
    return {
        "tls_version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
        "cipher_bits": cipher[2] if cipher else None,
    }


def describe_certificate(der: bytes, *, now: datetime | None = None) -> dict[str, Any]:
    """JSON-ready facts about a DER certificate, for people to read. Whether it is valid for the host name
    is OpenSSL's verdict in the verifying handshake (trust_kind), not ours.

    Raises ValueError only when `der` is not a certificate at all; malformed extensions end up in
    `sans_error` (with `sans` empty), and `self_signed` is False when the signature cannot be checked.
    """
    parsed = _parsed_certificate(der)
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return {
        **parsed.facts,
        "sans": list(parsed.facts["sans"]),  # a fresh list: the parsed facts are shared through the cache
        # Whole days, rounded down: 0 on the last day, negative once expired.
        "days_left": (parsed.not_after - moment).days,
        "expired": moment > parsed.not_after,
        "not_yet_valid": moment < parsed.not_before,
    }


@dataclass(frozen=True, slots=True)
class _ParsedCertificate:
    facts: dict[str, Any]  # what does not depend on the time or the host name asked for
    not_before: datetime
    not_after: datetime


# A server shows every client the same certificate: parsing it and checking its signature once (not once
# per run) took ~9 % of the CPU of a STARTTLS run under load (pyinstrument, 200 runs in flight).
@functools.lru_cache(maxsize=64)
def _parsed_certificate(der: bytes) -> _ParsedCertificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_der_x509_certificate(der)
    try:
        dns_names, ip_addresses = _subject_alt_names(cert)
        sans_error = None
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        # A malformed extension from the server: describe the rest, and say so instead of raising.
        dns_names, ip_addresses, sans_error = [], [], f"unreadable extensions: {_NAME_TEXT.line(str(exc))}"
    facts = {
        "subject": _NAME_TEXT.line(cert.subject.rfc4514_string()),
        "issuer": _NAME_TEXT.line(cert.issuer.rfc4514_string()),
        "sans": _described_names(dns_names + [str(ip) for ip in ip_addresses]),
        "sans_error": sans_error,
        "not_before": _iso_utc(cert.not_valid_before_utc),
        "not_after": _iso_utc(cert.not_valid_after_utc),
        "self_signed": _is_self_signed(cert),
        "serial": format(cert.serial_number, "X"),
        "signature_algorithm": _signature_algorithm(cert),
        "public_key": _public_key_label(cert),
        "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    }
    return _ParsedCertificate(facts, cert.not_valid_before_utc, cert.not_valid_after_utc)


def _described_names(names: list[str]) -> tuple[str, ...]:
    """SANs for the report: cleaned, and bounded (a certificate may carry thousands)."""
    shown = tuple(_NAME_TEXT.line(name) for name in names[:_MAX_DESCRIBED_SANS])
    more = len(names) - _MAX_DESCRIBED_SANS
    return (*shown, f"… ({more} more)") if more > 0 else shown


def _subject_alt_names(
    cert: x509.Certificate,
) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = [
        ip
        for ip in san.get_values_for_type(x509.IPAddress)
        if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)  # IP network SANs do not name a host
    ]
    return list(san.get_values_for_type(x509.DNSName)), ips


def _is_self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject AND the certificate's signature verifies with its own public key."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _signature_algorithm(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    # cryptography names well-known OIDs as OpenSSL does ("sha256WithRSAEncryption", "ecdsa-with-SHA256").
    name = getattr(oid, "_name", None)
    return name if isinstance(name, str) and name != "Unknown OID" else oid.dotted_string


def _public_key_label(cert: x509.Certificate) -> str:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unknown"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    return type(key).__name__


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_UNKNOWN_ISSUER_CODES: Final = frozenset(
    {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY}
)
_MAX_NAMED_CA_CERTS: Final = 3


def unverified_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes] | None:
    """The certificates the server sent (DER, leaf first), or None where this Python cannot say. Python 3.13
    makes it public; 3.10-3.12 have the same method on the private _ssl object. Only ca_file_relation reads
    it, to tell a server that does not send its intermediate from a CA file that has nothing to do with it."""
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None
    )
    if getter is None:
        return None
    try:
        chain = getter() or []
        return [cert if isinstance(cert, bytes) else cert.public_bytes(_ENCODING_DER) for cert in chain]
    except (AttributeError, TypeError, ValueError, ssl.SSLError):
        return None


_ENCODING_DER: Final = 2  # _ssl.ENCODING_DER


def ca_file_relation(
    err: ssl.SSLCertVerificationError, ca_bundle: str | None, chain_der: list[bytes] | None
) -> tuple[TlsKind, str] | None:
    """After OpenSSL found no trusted issuer: how the given CA file relates to what the server sent, so the
    fix says what to give instead. OpenSSL's verdict stands; this only reads the file against the chain.

    - the file holds the leaf's issuer, but that is an intermediate (not self-signed): OpenSSL needs the
      chain to end at a root, so the root is missing (verify code 2);
    - the server sent its intermediate(s) and nothing in the file issued any certificate of that chain: the
      file has nothing to do with this server. A server that sends only its leaf stays `unknown_issuer`: a
      missing intermediate and an unrelated file look the same from here.
    """
    if ca_bundle is None or not chain_der or err.verify_code not in _UNKNOWN_ISSUER_CODES:
        return None
    from cryptography import x509

    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
        given = x509.load_pem_x509_certificates(ca_bundle.encode("ascii"))
    except ValueError:
        return None
    leaf = chain[0]
    issuer = _short_name(leaf.issuer)
    issuers = [cert for cert in given if cert.subject == leaf.issuer]
    if any(not _is_self_signed(cert) for cert in issuers):
        return TlsKind.CA_FILE_NOT_ROOT, f"the CA file holds {issuer}, which is itself issued by another CA"
    names_in_chain = {cert.issuer for cert in chain} | {cert.subject for cert in chain}
    if len(chain) < 2 or any(cert.subject in names_in_chain for cert in given):
        return None
    held = "; ".join(_short_name(cert.subject) for cert in given[:_MAX_NAMED_CA_CERTS])
    more = f" and {len(given) - _MAX_NAMED_CA_CERTS} more" if len(given) > _MAX_NAMED_CA_CERTS else ""
    return TlsKind.CA_FILE_UNRELATED, f"the server's certificate was issued by {issuer}; the CA file holds {held}{more}"


def _short_name(name: x509.Name) -> str:
    """A CA's name as people say it (its CN, else its organisation and unit), cleaned like server text: the
    finding quotes at most 200 characters, and a full distinguished name would fill them."""
    from cryptography import x509

    parts = [
        str(attribute.value)
        for oid in (x509.NameOID.COMMON_NAME, x509.NameOID.ORGANIZATION_NAME, x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
        for attribute in name.get_attributes_for_oid(oid)
    ]
    cn = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    text = str(cn[0].value) if cn else ", ".join(parts) or name.rfc4514_string()
    return _NAME_TEXT.reply(f'"{text[:80]}"')
