"""diag.certs against real TLS handshakes on 127.0.0.1: every trust verdict comes from OpenSSL itself."""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

from diag.certs import (
    client_context,
    client_context_async,
    connection_facts,
    describe_certificate,
    expiry_warning_days,
    handshake_kind,
    lazy_trust_directory,
    trust_detail,
    trust_kind,
)
from tests import certs
from tests.certs import CertFiles
from tests.peer import Peer, handshakes

STEP_TIMEOUT = 10.0  # bounds every network step; loopback handshakes take milliseconds


# ---------------------------------------------------------------- real peers on loopback


@asynccontextmanager
async def tls_server(server_context: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS listener on 127.0.0.1 that completes the handshake and hangs up; yields its port."""

    async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # the client may already be gone

    server = await asyncio.start_server(
        hang_up, "127.0.0.1", 0, ssl=server_context, ssl_handshake_timeout=STEP_TIMEOUT
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def plaintext_server(greeting: bytes | None) -> AsyncIterator[int]:
    """A TCP listener that writes `greeting` and reads what comes back, or (None) closes at once."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if greeting is not None:
                writer.write(greeting)
                await writer.drain()
                async with asyncio.timeout(STEP_TIMEOUT):
                    await reader.read(4096)  # the ClientHello; the client then gives up
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@dataclass
class Handshake:
    leaf_der: bytes
    facts: dict[str, object]


async def shake_hands(port: int, context: ssl.SSLContext, server_hostname: str) -> Handshake:
    """A full TLS handshake as the tls stage does it: connect to 127.0.0.1, check as `server_hostname`."""
    async with asyncio.timeout(STEP_TIMEOUT):
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=context,
            server_hostname=server_hostname,
            ssl_handshake_timeout=STEP_TIMEOUT,
        )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert isinstance(ssl_object, ssl.SSLObject)
        der = ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return Handshake(der, connection_facts(ssl_object))
    finally:
        writer.close()
        try:
            async with asyncio.timeout(STEP_TIMEOUT):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass


async def verification_error(
    files: CertFiles, server_hostname: str = "localhost", *, ca_bundle: str | None = None
) -> ssl.SSLCertVerificationError:
    async with tls_server(files.server_context()) as port:
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await shake_hands(port, client_context(ca_bundle=ca_bundle, verify=True), server_hostname)
    return caught.value


async def handshake_error(port: int, context: ssl.SSLContext | None = None) -> BaseException:
    with pytest.raises((OSError, EOFError)) as caught:
        await shake_hands(port, context or client_context(ca_bundle=None, verify=True), "localhost")
    return caught.value


# ---------------------------------------------------------------- client_context


async def test_valid_chain_passes_when_its_ca_is_given(tmp_path: Path) -> None:
    files = certs.ca_issued(tmp_path)
    async with tls_server(files.server_context()) as port:
        context = client_context(ca_bundle=files.ca_pem, verify=True)
        for server_hostname in ("localhost", "127.0.0.1"):
            done = await shake_hands(port, context, server_hostname)
            assert done.leaf_der == files.leaf_der
    assert str(done.facts["tls_version"]).startswith("TLSv1.")
    assert isinstance(done.facts["cipher"], str)
    assert done.facts["cipher"]
    assert isinstance(done.facts["cipher_bits"], int)
    assert done.facts["cipher_bits"] >= 128


async def test_valid_chain_is_unknown_issuer_without_its_ca(tmp_path: Path) -> None:
    err = await verification_error(certs.ca_issued(tmp_path))
    assert trust_kind(err) == "unknown_issuer"
    assert trust_detail(err)["verify_code"] == 20


def test_verifying_context_checks_chain_and_hostname() -> None:
    context = client_context(ca_bundle=None, verify=True)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    # The system's CAs: read lazily from the hashed directory where it holds them all, else loaded up front.
    loaded_up_front = len(ssl.create_default_context().get_ca_certs())
    lazily = lazy_trust_directory(ssl.get_default_verify_paths()) is not None
    assert context.cert_store_stats()["x509_ca"] == (0 if lazily else loaded_up_front)


def hashed_directory(tmp: Path, *ca_pems: str) -> Path:
    """A CA directory as `openssl rehash` makes it: each CA in a file named by its subject hash."""
    directory = tmp / "certs"
    directory.mkdir()
    for pem in ca_pems:
        name = subprocess.run(
            ["openssl", "x509", "-subject_hash", "-noout"], input=pem, capture_output=True, text=True, check=True
        ).stdout.strip()
        (directory / f"{name}.0").write_text(pem)
    return directory


def trust_paths(
    bundle: Path | None, directory: Path | None, *, default_bundle: Path | None = None
) -> ssl.DefaultVerifyPaths:
    """What ssl.get_default_verify_paths() says on a system whose OpenSSL default bundle is `default_bundle`
    (the bundle itself unless given) and whose SSL_CERT_FILE / SSL_CERT_DIR resolve to `bundle`, `directory`."""
    default = default_bundle or bundle
    return ssl.DefaultVerifyPaths(
        str(bundle) if bundle else None, str(directory) if directory else None,
        "SSL_CERT_FILE", str(default), "SSL_CERT_DIR", str(directory),
    )


async def test_the_hashed_directory_stands_for_the_bundle_it_matches_and_verifies_lazily(tmp_path: Path) -> None:
    files = certs.ca_issued(tmp_path)
    assert files.ca_pem is not None
    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text(files.ca_pem)
    directory = hashed_directory(tmp_path, files.ca_pem)
    assert lazy_trust_directory(trust_paths(bundle, directory)) == str(directory)
    assert lazy_trust_directory(trust_paths(None, directory)) == str(directory)  # no file: the directory alone

    context = ssl.create_default_context(capath=lazy_trust_directory(trust_paths(bundle, directory)))
    assert context.cert_store_stats()["x509_ca"] == 0  # nothing parsed up front
    async with tls_server(files.server_context()) as port:
        done = await shake_hands(port, context, "localhost")
    assert done.leaf_der == files.leaf_der
    assert context.cert_store_stats()["x509_ca"] == 1  # read when the chain needed it


def test_the_bundle_is_loaded_whole_unless_the_directory_matches_it(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours, other = certs.ca_issued(tmp_path / "a"), certs.ca_issued(tmp_path / "b")
    assert ours.ca_pem is not None and other.ca_pem is not None
    directory = hashed_directory(tmp_path, ours.ca_pem)
    two = tmp_path / "two.crt"
    two.write_text(ours.ca_pem + other.ca_pem)
    one = tmp_path / "one.crt"
    one.write_text(ours.ca_pem)
    assert lazy_trust_directory(trust_paths(two, directory)) is None  # a CA of the file is not in the directory
    # SSL_CERT_FILE names a bundle of one's own, not OpenSSL's default: it is loaded, whatever the directory holds
    assert lazy_trust_directory(trust_paths(one, directory, default_bundle=two)) is None
    assert lazy_trust_directory(trust_paths(one, None)) is None  # no directory
    assert lazy_trust_directory(trust_paths(one, tmp_path / "missing")) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert lazy_trust_directory(trust_paths(None, empty)) is None  # a directory without hash links


def test_ca_bundle_adds_to_the_system_cas(tmp_path: Path) -> None:
    files = certs.ca_issued(tmp_path)
    assert files.ca_pem is not None
    baseline = client_context(ca_bundle=None, verify=True).cert_store_stats()["x509_ca"]
    with_bundle = client_context(ca_bundle=files.ca_pem, verify=True).cert_store_stats()["x509_ca"]
    assert with_bundle == baseline + 1


@pytest.mark.parametrize(
    "bundle",
    [
        "garbage",
        "",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    ],
)
def test_unparsable_ca_bundle_is_a_value_error(bundle: str) -> None:
    with pytest.raises(ValueError, match="CA bundle"):
        client_context(ca_bundle=bundle, verify=True)


async def test_non_verifying_context_reads_the_leaf_that_verification_rejects(tmp_path: Path) -> None:
    files = certs.self_signed(tmp_path)
    context = client_context(ca_bundle=None, verify=False)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False
    async with tls_server(files.server_context()) as port:
        done = await shake_hands(port, context, "other.example")
    assert done.leaf_der == files.leaf_der
    assert describe_certificate(done.leaf_der)["self_signed"] is True


# ---------------------------------------------------------------- trust_kind / trust_detail


async def test_self_signed_leaf_is_code_18(tmp_path: Path) -> None:
    err = await verification_error(certs.self_signed(tmp_path))
    assert trust_kind(err) == "self_signed"
    detail = trust_detail(err)
    assert detail == {"verify_code": 18, "verify_message": err.verify_message}
    assert "self" in detail["verify_message"]
    assert "signed" in detail["verify_message"]
    json.dumps(detail)


async def test_self_signed_root_sent_in_the_chain_is_code_19(tmp_path: Path) -> None:
    files = certs.ca_issued(tmp_path)
    assert files.ca_pem is not None
    # The server sends leaf + its (untrusted) root: OpenSSL then says "self-signed certificate in chain".
    with_root = tmp_path / "leaf-and-root.pem"
    with_root.write_text(files.cert_path.read_text() + files.ca_pem)
    err = await verification_error(CertFiles(with_root, files.key_path, files.ca_pem))
    assert trust_kind(err) == "self_signed"
    assert trust_detail(err)["verify_code"] == 19


async def test_self_signed_passes_when_trusted_as_bundle(tmp_path: Path) -> None:
    files = certs.self_signed(tmp_path)
    async with tls_server(files.server_context()) as port:
        done = await shake_hands(port, client_context(ca_bundle=files.ca_pem, verify=True), "localhost")
    assert done.leaf_der == files.leaf_der


async def test_unknown_ca_is_code_20_even_with_another_ca_given(tmp_path: Path) -> None:
    files = certs.unknown_ca(tmp_path)
    err = await verification_error(files, ca_bundle=files.ca_pem)
    assert trust_kind(err) == "unknown_issuer"
    assert trust_detail(err)["verify_code"] == 20


async def test_wrong_hostname_is_code_62(tmp_path: Path) -> None:
    files = certs.wrong_host(tmp_path)
    err = await verification_error(files, "localhost", ca_bundle=files.ca_pem)
    assert trust_kind(err) == "hostname_mismatch"
    assert trust_detail(err)["verify_code"] == 62


@pytest.mark.parametrize("server_hostname", ["127.0.0.2", "::1"])
async def test_ip_not_in_sans_is_code_64(tmp_path: Path, server_hostname: str) -> None:
    files = certs.ca_issued(tmp_path)  # SANs: localhost, 127.0.0.1
    err = await verification_error(files, server_hostname, ca_bundle=files.ca_pem)
    assert trust_kind(err) == "hostname_mismatch"
    assert trust_detail(err)["verify_code"] == 64


async def test_expired_is_code_10(tmp_path: Path) -> None:
    files = certs.expired(tmp_path)
    err = await verification_error(files, ca_bundle=files.ca_pem)
    assert trust_kind(err) == "expired"
    assert trust_detail(err)["verify_code"] == 10


async def test_not_yet_valid_is_code_9(tmp_path: Path) -> None:
    files = certs.not_yet_valid(tmp_path)
    err = await verification_error(files, ca_bundle=files.ca_pem)
    assert trust_kind(err) == "not_yet_valid"
    assert trust_detail(err)["verify_code"] == 9


async def test_expiring_soon_still_verifies(tmp_path: Path) -> None:
    files = certs.expiring_soon(tmp_path, days=10)
    async with tls_server(files.server_context()) as port:
        done = await shake_hands(port, client_context(ca_bundle=files.ca_pem, verify=True), "localhost")
    facts = describe_certificate(done.leaf_der)
    assert 9 <= facts["days_left"] <= 10
    assert facts["days_left"] < expiry_warning_days() == 30


def _constructed_error(message: str, code: int) -> ssl.SSLCertVerificationError:
    """Built by hand (not by a handshake) with the verify_code and message the ssl module always sets."""
    err = ssl.SSLCertVerificationError(1, message)
    err.verify_code = code
    err.verify_message = message
    return err


def test_trust_kind_trusts_the_code_over_the_text() -> None:
    err = _constructed_error("self-signed certificate", 10)
    assert trust_kind(err) == "expired"


@pytest.mark.parametrize(
    ("code", "kind"),
    [(2, "unknown_issuer"), (21, "unknown_issuer"), (24, "untrusted"), (27, "untrusted"), (0, "untrusted")],
)
def test_trust_kind_maps_the_other_codes(code: int, kind: str) -> None:
    assert trust_kind(_constructed_error("some message", code)) == kind


# ---------------------------------------------------------------- handshake_kind


@pytest.mark.parametrize(
    "greeting",
    [b"220 smtp ESMTP\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n"],
)
async def test_plaintext_answer_is_not_tls(greeting: bytes) -> None:
    async with plaintext_server(greeting) as port:
        err = await handshake_error(port)
    assert handshake_kind(err) == "not_tls"


async def test_peer_closing_at_once_is_handshake_failed() -> None:
    async with plaintext_server(None) as port:
        err = await handshake_error(port)
    assert handshake_kind(err) == "handshake_failed"


async def test_protocol_version_alert_is_handshake_failed(tmp_path: Path) -> None:
    files = certs.ca_issued(tmp_path)
    server_context = files.server_context()
    server_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client = client_context(ca_bundle=files.ca_pem, verify=True)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    async with Peer(handshakes(server_context)) as peer:  # sends its alert before hanging up
        err = await handshake_error(peer.port, client)
    assert isinstance(err, ssl.SSLError)
    assert "ALERT" in str(err.reason)
    assert handshake_kind(err) == "handshake_failed"


async def test_version_mismatch_against_asyncio_server_is_handshake_failed(tmp_path: Path) -> None:
    """asyncio's server side drops the connection without its alert: the client sees a reset."""
    files = certs.ca_issued(tmp_path)
    server_context = files.server_context()
    server_context.maximum_version = ssl.TLSVersion.TLSv1_2
    client = client_context(ca_bundle=files.ca_pem, verify=True)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    async with tls_server(server_context) as port:
        err = await handshake_error(port, client)
    assert handshake_kind(err) == "handshake_failed"


def test_handshake_kind_of_non_tls_errors() -> None:
    assert handshake_kind(TimeoutError()) == "handshake_failed"
    assert handshake_kind(ConnectionResetError()) == "handshake_failed"
    assert handshake_kind(_constructed_error("certificate verify failed", 18)) == "handshake_failed"


# ---------------------------------------------------------------- describe_certificate


def _parse_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0)
    return moment


def test_describe_ca_issued(tmp_path: Path) -> None:
    files = certs.ca_issued(tmp_path)
    assert files.ca_pem is not None
    cert = x509.load_der_x509_certificate(files.leaf_der)
    ca = x509.load_pem_x509_certificate(files.ca_pem.encode())
    facts = describe_certificate(files.leaf_der)
    json.dumps(facts)
    assert facts["subject"] == cert.subject.rfc4514_string()
    assert facts["issuer"] == ca.subject.rfc4514_string() != facts["subject"]
    assert facts["sans"] == ["localhost", "127.0.0.1"]
    assert facts["sans_error"] is None
    assert facts["self_signed"] is False
    assert facts["expired"] is False
    assert facts["not_yet_valid"] is False
    assert facts["days_left"] > expiry_warning_days()
    assert _parse_utc(facts["not_before"]) == cert.not_valid_before_utc
    assert _parse_utc(facts["not_after"]) == cert.not_valid_after_utc
    assert int(facts["serial"], 16) == cert.serial_number
    assert facts["public_key"] == "EC secp256r1"
    assert facts["signature_algorithm"] == "ecdsa-with-SHA256"
    assert facts["sha256_fingerprint"].replace(":", "").lower() == hashlib.sha256(files.leaf_der).hexdigest()


def test_describe_rsa_key(tmp_path: Path) -> None:
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.RSA)
    pem = leaf.cert_chain_pems[0].bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    facts = describe_certificate(der)
    assert facts["public_key"] == "RSA 2048"
    assert facts["signature_algorithm"] == "sha256WithRSAEncryption"


def test_describe_self_signed(tmp_path: Path) -> None:
    facts = describe_certificate(certs.self_signed(tmp_path).leaf_der)
    assert facts["self_signed"] is True
    assert facts["issuer"] == facts["subject"]
    assert 29 <= facts["days_left"] <= 30


def test_describe_a_ca_root_as_self_signed(tmp_path: Path) -> None:
    files = certs.ca_issued(tmp_path)
    assert files.ca_pem is not None
    root = x509.load_pem_x509_certificate(files.ca_pem.encode()).public_bytes(serialization.Encoding.DER)
    assert describe_certificate(root)["self_signed"] is True


def test_same_issuer_and_subject_signed_by_another_key_is_not_self_signed() -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.com")])
    own_key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(own_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(other_key, hashes.SHA256())
    )
    facts = describe_certificate(forged.public_bytes(serialization.Encoding.DER))
    assert facts["issuer"] == facts["subject"]
    assert facts["self_signed"] is False
    assert facts["sans"] == []


def test_describe_expired(tmp_path: Path) -> None:
    facts = describe_certificate(certs.expired(tmp_path).leaf_der)
    assert facts["expired"] is True
    assert facts["not_yet_valid"] is False
    assert facts["days_left"] < 0


def test_describe_not_yet_valid(tmp_path: Path) -> None:
    facts = describe_certificate(certs.not_yet_valid(tmp_path).leaf_der)
    assert facts["not_yet_valid"] is True
    assert facts["expired"] is False
    assert facts["days_left"] > 0


def test_describe_wrong_host_and_unknown_ca(tmp_path: Path) -> None:
    wrong = describe_certificate(certs.wrong_host(tmp_path).leaf_der)
    assert wrong["sans"] == ["other.example"]
    assert describe_certificate(certs.unknown_ca(tmp_path).leaf_der)["self_signed"] is False


def test_describe_at_a_given_moment(tmp_path: Path) -> None:
    der = certs.ca_issued(tmp_path).leaf_der
    not_after = x509.load_der_x509_certificate(der).not_valid_after_utc
    after = describe_certificate(der, now=not_after + timedelta(days=1, hours=1))
    assert after["expired"] is True
    assert after["days_left"] == -2
    before = describe_certificate(der, now=not_after - timedelta(days=3, hours=1))
    assert before["expired"] is False
    assert before["days_left"] == 3


def test_describe_survives_a_malformed_san_extension() -> None:
    """A server controls the bytes: a truncated SAN extension must not make the stage raise."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.com")])
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    broken_san = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x05a")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(broken_san, critical=False)
        .sign(key, hashes.SHA256())
    )
    facts = describe_certificate(cert.public_bytes(serialization.Encoding.DER))
    json.dumps(facts)
    assert facts["sans"] == []
    assert "unreadable" in facts["sans_error"]
    assert facts["subject"] == "CN=mail.example.com"


def test_describe_rejects_what_is_not_a_certificate() -> None:
    with pytest.raises(ValueError):
        describe_certificate(b"not a certificate")


# ---------------------------------------------------------------- hostname matching


def test_client_contexts_are_cached_and_the_cache_is_bounded(tmp_path: Path) -> None:
    """Building a verifying context loads the system CA store (~17 ms of CPU): one per bundle, at most 16."""
    from diag import certs as diag_certs

    first = client_context(ca_bundle=None, verify=True)
    assert client_context(ca_bundle=None, verify=True) is first
    assert client_context(ca_bundle=None, verify=False) is not first
    bundles = [certs.ca_issued(tmp_path).ca_pem for _ in range(20)]  # a fresh CA each time
    for pem in bundles:
        client_context(ca_bundle=pem, verify=True)
    assert len(diag_certs._CONTEXTS) <= diag_certs._CONTEXT_CACHE_SIZE
    assert (bundles[-1], True) in diag_certs._CONTEXTS  # the newest stays, the oldest went
    assert (bundles[0], True) not in diag_certs._CONTEXTS


async def test_client_context_async_returns_the_cached_context() -> None:
    first = await client_context_async(ca_bundle=None, verify=False)
    assert await client_context_async(ca_bundle=None, verify=False) is first


def test_prepare_builds_the_verifying_context_and_imports_cryptography_in_a_thread(tmp_path: Path) -> None:
    """Issue 13: a run starts getting TLS ready when it starts (the context with the system store, the
    import of cryptography), so STARTTLS finds both done. In a fresh interpreter: this one has both."""
    pem = certs.ca_issued(tmp_path).ca_pem
    code = (
        "import json, sys, threading\n"
        "from diag import certs\n"
        "before = 'cryptography.x509' in sys.modules\n"
        f"certs.prepare({pem!r})\n"
        "for thread in threading.enumerate():\n"
        "    if thread.name == 'diag-tls-prepare':\n"
        "        thread.join(30)\n"
        f"print(json.dumps([before, 'cryptography.x509' in sys.modules, ({pem!r}, True) in certs._CONTEXTS]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == [False, True, True]


def test_prepare_starts_one_thread_per_bundle_while_one_is_at_work(tmp_path: Path) -> None:
    """Issue 13: `check` prepares before it imports the engine and the run prepares again when it starts (a
    service's first wave of runs likewise): while a thread is still loading the store and importing
    cryptography, asking again starts no second thread that would only wait for the first one's locks. In a
    fresh interpreter, where the import takes the first thread many milliseconds."""
    pem = certs.ca_issued(tmp_path).ca_pem
    code = (
        "import json, threading\n"
        "from diag import certs\n"
        f"for _ in range(3): certs.prepare({pem!r})\n"
        "working = [t for t in threading.enumerate() if t.name == 'diag-tls-prepare']\n"
        "for thread in working: thread.join(30)\n"
        f"print(json.dumps([len(working), ({pem!r}, True) in certs._CONTEXTS]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == [1, True]
