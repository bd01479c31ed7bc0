"""The ehlo and tls stages through `diag.runner.run`, over real TLS on loopback.

Certificates come from tests.certs (trustme and cryptography) and are loaded into FakeSMTP(cert=, key=).
The host is the IP literal 127.0.0.1, which every test certificate lists as a SAN unless the test wants
a mismatch, so no DNS is involved.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from diag.config import TlsMode
from diag.findings import finding_for
from diag.kinds import TlsKind
from diag.report import Report, Status
from diag.runner import run
from fake_smtp import FakeSMTP, parse_fault
from tests import certs
from tests.diag.conftest import (
    PASSWORD,
    SHORT_TIMEOUT_S,
    USER,
    assert_failed_at,
    assert_warning_at,
    config_for,
    tls_server,
)
from tests.peer import Peer, SmtpScript

AUTH_SERVER = {"auth": "required", "username": USER, "password": PASSWORD}
OUR_MECHANISMS = ["CRAM-MD5", "LOGIN", "PLAIN"]


def creds(**more: Any) -> dict[str, Any]:
    return {"username": USER, "password": PASSWORD, "timeout_s": 5.0, **more}


def assert_went_on(report: Report) -> None:
    """With Insecure Skip TLS Verify the trust failure is a warning and the later stages run and pass."""
    assert report.verdict == "valid"
    assert report.stage("auth").status is Status.PASSED
    assert report.stage("mail_from").status is Status.PASSED


# -- ehlo ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 554])
async def test_ehlo_and_helo_rejected(fake_smtp_factory: Callable[..., FakeSMTP], code: int) -> None:
    srv = fake_smtp_factory(faults=[parse_fault(f"ehlo=reply:{code}"), parse_fault(f"helo=reply:{code}")])
    report = await run(config_for(srv.port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "ehlo", "ehlo.rejected")
    assert f"rejected EHLO ({code} " in result.summary and f"HELO ({code} " in result.summary
    assert result.finding is not None
    assert f"rejected both EHLO and HELO: \"{code} " in result.finding.cause
    assert "helo_name" in result.finding.fix


async def test_helo_only_server_is_a_warning(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(faults=[parse_fault("ehlo=reply:502")])
    report = await run(config_for(srv.port, tls_mode="none"))
    result = assert_warning_at(report, "ehlo", "ehlo.helo_only")
    assert result.facts["esmtp"] is False
    assert "only speaks HELO" in result.summary
    assert result.finding is not None
    assert '"502 5.5.1 Command not implemented"' in result.finding.cause
    assert "neither STARTTLS nor AUTH" in result.finding.cause
    assert report.stage("mail_from").status is Status.PASSED
    assert report.verdict == "valid"


async def test_ehlo_capabilities_are_facts(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(auth="required", tls="off", username=USER, password=PASSWORD, max_size=12345)
    report = await run(config_for(srv.port, **creds(tls_mode="none")))
    ehlo = report.stage("ehlo")
    assert ehlo.status is Status.PASSED
    assert ehlo.facts["esmtp"] is True
    assert ehlo.facts["size_limit"] == 12345
    assert sorted(ehlo.facts["auth_mechanisms"]) == OUR_MECHANISMS
    assert ehlo.facts["starttls_offered"] is False
    assert "AUTH" in ehlo.summary and "SIZE" in ehlo.summary


# -- STARTTLS ------------------------------------------------------------------------------------------


async def test_starttls_not_offered_with_credentials_fails(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(tls="starttls", faults=[parse_fault("ehlo=no-starttls")], **AUTH_SERVER)
    report = await run(config_for(srv.port, **creds()))
    result = assert_failed_at(report, "tls", "tls.starttls_not_offered")
    assert result.facts["starttls_offered"] is False
    assert result.finding is not None
    assert "credentials must never travel in clear text" in result.finding.cause
    assert "TLS mode to 'none' explicitly" in result.finding.fix


async def test_starttls_not_offered_anonymous_auto_is_a_warning(
    fake_smtp_factory: Callable[..., FakeSMTP],
) -> None:
    srv = fake_smtp_factory()
    report = await run(config_for(srv.port))
    result = assert_warning_at(report, "tls", "tls.starttls_not_offered")
    assert result.finding is not None and "travels unencrypted" in result.finding.cause
    assert report.stage("mail_from").status is Status.PASSED
    assert report.verdict == "valid"


async def test_starttls_demanded_but_not_offered_fails_even_anonymous(
    fake_smtp_factory: Callable[..., FakeSMTP],
) -> None:
    srv = fake_smtp_factory()
    report = await run(config_for(srv.port, tls_mode=TlsMode.STARTTLS))
    assert_failed_at(report, "tls", "tls.starttls_not_offered")


async def test_starttls_rejected(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(tls="starttls", faults=[parse_fault("starttls=reply:454")], **AUTH_SERVER)
    report = await run(config_for(srv.port, **creds()))
    result = assert_failed_at(report, "tls", "tls.starttls_rejected")
    assert result.facts["starttls_reply"].startswith("454 ")
    assert result.finding is not None
    assert '"454 4.7.0 TLS not available due to local problem"' in result.finding.cause
    assert "454" in result.finding.fix


async def test_implicit_tls_against_the_plain_port_is_not_tls(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    """The implicit handshake happens while connecting, so the connect stage reports the tls finding."""
    srv = fake_smtp_factory(tls="both", **AUTH_SERVER)
    report = await run(config_for(srv.port, **creds(tls_mode="implicit")))
    result = assert_failed_at(report, "connect", "tls.not_tls")
    assert "answered the TLS handshake in plaintext" in result.summary
    assert result.finding is not None
    assert f"port {srv.port} speaks plain SMTP" in result.finding.cause
    assert f"STARTTLS for port {srv.port}" in result.finding.fix


def _no_common_cipher(files: certs.CertFiles) -> ssl.SSLContext:
    """A server stuck in the past: TLS 1.2 at most, one SHA-1 cipher our client (and Python's) refuses."""
    context = files.server_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA")
    return context


async def test_handshake_failed_over_starttls(
    start_peer: Callable[..., Awaitable[Peer]], cert_dir: Path
) -> None:
    files = certs.ca_issued(cert_dir)
    peer = await start_peer(SmtpScript(("STARTTLS", "AUTH PLAIN"), tls_context=_no_common_cipher(files)))
    report = await run(config_for(peer.port, **creds(ca_bundle=files.ca_pem)))
    result = assert_failed_at(report, "tls", "tls.handshake_failed")
    assert result.summary == "The TLS handshake failed: SSLV3_ALERT_HANDSHAKE_FAILURE."
    assert result.finding is not None
    assert "SSLV3_ALERT_HANDSHAKE_FAILURE" in result.finding.cause
    assert "no common TLS version or cipher" in result.finding.cause


# -- certificate trust, STARTTLS and implicit TLS ------------------------------------------------------


TRUST_CASES = [
    # factory, trust the given CA?, finding code, OpenSSL verify code, words the cause must contain
    (certs.self_signed, False, "tls.self_signed", 18, "self-signed"),
    # No CA file: a CA this machine does not trust (an unrelated CA file is tls.ca_file_unrelated).
    (certs.unknown_ca, False, "tls.unknown_issuer", 20, "unable to get local issuer certificate"),
    (certs.wrong_host, True, "tls.hostname_mismatch", 64, "not valid for the name 127.0.0.1"),
    (certs.expired, True, "tls.expired", 10, "has expired"),
    (certs.not_yet_valid, True, "tls.not_yet_valid", 9, "not valid yet"),
]
TRUST_IDS = [case[2] for case in TRUST_CASES]


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
@pytest.mark.parametrize(("factory", "trust_ca", "code", "verify_code", "words"), TRUST_CASES, ids=TRUST_IDS)
async def test_untrusted_certificate_fails(
    fake_smtp_factory: Callable[..., FakeSMTP],
    cert_dir: Path,
    factory: Callable[[Path], certs.CertFiles],
    trust_ca: bool,
    code: str,
    verify_code: int,
    words: str,
    implicit: bool,
) -> None:
    files = factory(cert_dir)
    srv = tls_server(fake_smtp_factory, files, **AUTH_SERVER)
    port = srv.tls_port if implicit else srv.port
    assert port is not None
    config = config_for(
        port,
        **creds(ca_bundle=files.ca_pem if trust_ca else None, tls_mode="implicit" if implicit else "auto"),
    )
    report = await run(config)
    result = assert_failed_at(report, "tls", code)
    assert result.facts["verified"] is False
    assert result.facts["verify_code"] == verify_code
    assert f"verify code {verify_code}" in result.summary
    assert "Insecure Skip TLS Verify" not in result.summary
    # The certificate is still described, from the second (non-verifying) handshake.
    leaf = x509.load_der_x509_certificate(files.leaf_der)
    assert result.facts["certificate_subject"] == leaf.subject.rfc4514_string()
    assert result.facts["certificate_sha256_fingerprint"] == leaf.fingerprint(hashes.SHA256()).hex(":").upper()
    assert result.finding is not None
    assert words in result.finding.cause
    assert "hides this" not in result.finding.cause  # the plain row, not the skip-verify variant
    assert result.finding.fix


@pytest.mark.parametrize(("factory", "trust_ca", "code", "verify_code", "words"), TRUST_CASES, ids=TRUST_IDS)
async def test_untrusted_certificate_with_skip_verify_is_a_warning(
    fake_smtp_factory: Callable[..., FakeSMTP],
    cert_dir: Path,
    factory: Callable[[Path], certs.CertFiles],
    trust_ca: bool,
    code: str,
    verify_code: int,
    words: str,
) -> None:
    files = factory(cert_dir)
    srv = tls_server(fake_smtp_factory, files, **AUTH_SERVER)
    config = config_for(
        srv.port,
        **creds(ca_bundle=files.ca_pem if trust_ca else None, insecure_skip_tls_verify=True),
    )
    report = await run(config)
    result = assert_warning_at(report, "tls", code)
    assert result.facts["verified"] is False and result.facts["verify_code"] == verify_code
    assert "Insecure Skip TLS Verify is on, so the check went on; without it this fails." in result.summary
    assert result.finding is not None
    assert "Insecure Skip TLS Verify hides this" in result.finding.cause
    assert "Insecure Skip TLS Verify off" in result.finding.fix
    assert_went_on(report)


def _wrong_purpose(tmp: Path) -> certs.CertFiles:
    """A CA-issued leaf for 127.0.0.1 whose extended key usage is client authentication only: OpenSSL
    fails it with verify code 26 (unsuitable certificate purpose), a trust failure without its own row."""
    ca = trustme.CA()
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client only")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "wrong-purpose.cert.pem", tmp / "wrong-purpose.key.pem"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certs.CertFiles(cert_path, key_path, ca.cert_pem.bytes().decode("ascii"))


async def test_other_verification_failures_are_untrusted(
    fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path
) -> None:
    files = _wrong_purpose(cert_dir)
    srv = tls_server(fake_smtp_factory, files, **AUTH_SERVER)
    report = await run(config_for(srv.port, **creds(ca_bundle=files.ca_pem)))
    result = assert_failed_at(report, "tls", "tls.untrusted")
    assert result.facts["verify_code"] == 26
    assert result.finding is not None and "unsuitable certificate purpose" in result.finding.cause


# -- warnings on a trusted certificate, and plaintext ----------------------------------------------------


async def test_expiring_soon_is_a_warning(fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path) -> None:
    files = certs.expiring_soon(cert_dir, days=10)
    srv = tls_server(fake_smtp_factory, files, **AUTH_SERVER)
    report = await run(config_for(srv.port, **creds(ca_bundle=files.ca_pem)))
    result = assert_warning_at(report, "tls", "tls.expiring_soon")
    assert result.facts["verified"] is True
    assert result.facts["certificate_days_left"] in (9, 10)
    assert f"It expires in {result.facts['certificate_days_left']} days." in result.summary
    assert result.finding is not None
    assert f"{result.facts['certificate_days_left']} days left" in result.finding.cause
    assert "Renew" in result.finding.fix
    assert_went_on(report)


def test_old_protocol_row() -> None:
    """Our client context refuses anything below TLS 1.2, so no loopback server can make the stage emit
    tls.old_protocol; the row is checked through finding_for."""
    finding = finding_for("tls", TlsKind.OLD_PROTOCOL, config_for(587), None, "TLSv1.1")
    assert finding.code == "tls.old_protocol"
    assert "TLSv1.1" in finding.cause and "TLS 1.2 or 1.3" in finding.fix


async def test_plaintext_credentials_warning(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(tls="off", **AUTH_SERVER)
    report = await run(config_for(srv.port, **creds(tls_mode="none")))
    result = assert_warning_at(report, "tls", "tls.plaintext_credentials")
    assert result.facts == {"tls": False}
    assert result.finding is not None and "clear text" in result.finding.cause
    assert report.stage("auth").status is Status.PASSED
    assert report.stage("auth").facts["tls"] is False
    assert report.verdict == "valid"


async def test_tls_mode_none_anonymous_skips_tls(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory()
    report = await run(config_for(srv.port, tls_mode="none"))
    tls = report.stage("tls")
    assert tls.status is Status.SKIPPED and tls.finding is None
    assert "TLS mode is 'none'" in tls.summary


# -- the happy paths -------------------------------------------------------------------------------------


async def test_starttls_with_a_ca_bundle_is_valid_and_described(
    fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path
) -> None:
    files = certs.ca_issued(cert_dir, ("localhost", "127.0.0.1"))
    srv = tls_server(fake_smtp_factory, files, tls="starttls", **AUTH_SERVER)
    report = await run(config_for(srv.port, **creds(ca_bundle=files.ca_pem)))
    assert report.verdict == "valid"
    assert [s.status for s in report.stages] == [
        Status.PASSED, Status.PASSED, Status.PASSED, Status.PASSED, Status.PASSED, Status.PASSED,
        Status.PASSED, Status.PASSED, Status.SKIPPED,
    ]  # fmt: skip  (rcpt_to probes with the From address; nothing is sent)
    tls = report.stage("tls")
    assert tls.facts["verified"] is True and tls.facts["tls_how"] == "STARTTLS"
    assert tls.facts["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert tls.facts["tls_version"] in tls.summary
    assert "the certificate is trusted for 127.0.0.1" in tls.summary
    leaf = x509.load_der_x509_certificate(files.leaf_der)
    assert tls.facts["certificate_subject"] == leaf.subject.rfc4514_string()
    assert tls.facts["certificate_sans"] == ["localhost", "127.0.0.1"]
    assert "certificate_hostname_matches" not in tls.facts  # OpenSSL's verdict is `verified`
    days_left = (leaf.not_valid_after_utc - datetime.now(UTC)).days
    assert tls.facts["certificate_days_left"] in (days_left - 1, days_left)
    # AUTH is offered only after STARTTLS (aiosmtpd's auth_require_tls): both lists are reported.
    assert report.stage("ehlo").facts["auth_mechanisms"] == []
    assert sorted(tls.facts["after_tls_auth_mechanisms"]) == OUR_MECHANISMS
    auth = report.stage("auth")
    assert auth.facts["tls"] is True and auth.facts["auth_mechanism_used"] == "PLAIN"
    assert auth.summary == f"Logged in as {USER} with AUTH PLAIN."


async def test_implicit_tls_is_valid(fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path) -> None:
    files = certs.ca_issued(cert_dir)
    srv = tls_server(fake_smtp_factory, files, tls="implicit", **AUTH_SERVER)
    assert srv.tls_port is not None
    report = await run(config_for(srv.tls_port, **creds(ca_bundle=files.ca_pem, tls_mode="implicit")))
    assert report.verdict == "valid", [(s.name, s.summary) for s in report.stages]
    assert "over implicit TLS" in report.stage("connect").summary
    tls = report.stage("tls")
    assert tls.status is Status.PASSED and tls.facts["tls_how"] == "implicit TLS"
    assert tls.facts["verified"] is True
    assert report.stage("auth").status is Status.PASSED


def test_a_handshake_failure_without_an_ssl_error_is_still_classified() -> None:
    """A refused STARTTLS on the reconnect that describes an untrusted certificate raises
    ProbeError("tls_handshake") with no SSL error behind it; it once became an unclassified
    "tls.tls_handshake". Both TLS stages now share one mapping. (Pure function: no peer refuses only the
    second STARTTLS of a run on demand.)"""
    from diag.findings import finding_for
    from diag.probe import ProbeError, handshake_failure

    kind, detail = handshake_failure(ProbeError("tls_handshake", "the server refused STARTTLS on reconnect: 454"))
    assert (kind, detail) == ("handshake_failed", "the server refused STARTTLS on reconnect: 454")
    finding = finding_for("tls", kind, config_for(587), None, detail)
    assert finding.code == "tls.handshake_failed" and not finding.cause.startswith("Unclassified")
    assert handshake_failure(ProbeError("tls_handshake", "TLS handshake failed: EOF"))[1] == "EOF"


# -- round trips (issue 13) ----------------------------------------------------------------------------


async def test_the_session_ends_with_quit_sent_but_not_waited_for_and_no_rset(
    start_peer: Callable[..., Awaitable[Peer]], cert_dir: Path
) -> None:
    """Over STARTTLS, a passing run says exactly the commands the diagnosis needs: no RSET before QUIT (no
    DATA follows, and QUIT ends the transaction), and QUIT reaches the server through TLS before the socket
    closes (its reply, which nothing reads, is no longer waited for: bench/rtt.py shows the round trip)."""
    files = certs.ca_issued(cert_dir)
    script = SmtpScript(("STARTTLS", "AUTH PLAIN"), tls_context=files.server_context(),
                        replies={"AUTH": "235 2.7.0 Authentication successful"})
    peer = await start_peer(script)
    report = await run(config_for(peer.port, **creds(ca_bundle=files.ca_pem)))
    assert report.verdict == "valid", [(s.name, s.summary) for s in report.stages]
    assert await peer.wait_all_closed(5.0)
    verbs = [line.split(" ", 1)[0].split(":", 1)[0].upper() for line in script.lines]
    assert verbs == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "QUIT"]  # RCPT: the From probed
