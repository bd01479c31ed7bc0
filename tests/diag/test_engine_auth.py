"""The auth stage through `diag.runner.run`: real AUTH against FakeSMTP over STARTTLS with a trusted CA.

Server replies that only some providers send are produced with fault rules carrying the provider's text;
provider variants keyed on the host name go through `finding_for`, since the host cannot be gmail.com
offline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from diag.config import SmtpConfig
from diag.findings import finding_for
from diag.kinds import AuthKind
from diag.report import Status
from diag.runner import run
from fake_smtp import FakeSMTP, parse_fault
from tests import certs
from tests.diag.conftest import (
    PASSWORD,
    USER,
    assert_failed_at,
    config_for,
    tls_server,
)
from tests.peer import Peer, SmtpScript

ServerAndConfig = Callable[..., tuple[FakeSMTP, SmtpConfig]]


@pytest.fixture
def starttls_auth(fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path) -> ServerAndConfig:
    """An authenticating STARTTLS server with a CA-issued certificate, and a config that trusts the CA."""
    files = certs.ca_issued(cert_dir)

    def start(*faults: str, password: str = PASSWORD, **config: Any) -> tuple[FakeSMTP, SmtpConfig]:
        srv = tls_server(
            fake_smtp_factory, files, tls="starttls", auth="required", username=USER, password=PASSWORD,
            faults=[parse_fault(f) for f in faults],
        )  # fmt: skip
        return srv, config_for(srv.port, username=USER, password=password, ca_bundle=files.ca_pem, **config)

    return start


async def test_login_passes(starttls_auth: ServerAndConfig) -> None:
    _, config = starttls_auth()
    report = await run(config)
    auth = report.stage("auth")
    assert auth.status is Status.PASSED and auth.finding is None
    assert auth.facts["auth_reply"].startswith("235 ")
    assert sorted(auth.facts["auth_mechanisms_offered"]) == ["CRAM-MD5", "LOGIN", "PLAIN"]
    assert report.verdict == "valid"


async def test_not_offered(starttls_auth: ServerAndConfig) -> None:
    _, config = starttls_auth("ehlo=no-auth")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.not_offered")
    assert result.facts["auth_mechanisms_offered"] == [] and result.facts["tls"] is True
    assert result.finding is not None
    assert result.finding.cause == "Credentials are configured but the server does not offer AUTH."
    assert "clear username and password" in result.finding.fix


async def test_not_offered_by_a_plaintext_relay(start_peer: Callable[..., Awaitable[Peer]]) -> None:
    """No STARTTLS and no AUTH at all: nothing says TLS would help, so it is not auth.tls_required."""
    peer = await start_peer(SmtpScript(("SIZE 1000000",)))
    report = await run(config_for(peer.port, username=USER, password=PASSWORD, tls_mode="none"))
    assert_failed_at(report, "auth", "auth.not_offered")


async def test_bad_credentials(starttls_auth: ServerAndConfig) -> None:
    _, config = starttls_auth(password="not-the-password")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.bad_credentials")
    assert result.summary == f"AUTH PLAIN as {USER} was refused: 535 5.7.8 Error: authentication failed."
    assert result.finding is not None
    reply = '"535 5.7.8 Error: authentication failed"'
    assert result.finding.cause == f"The server rejected the username or password ({reply})."
    assert "app password" in result.finding.fix


async def test_bad_credentials_with_auth_login(start_peer: Callable[..., Awaitable[Peer]]) -> None:
    peer = await start_peer(SmtpScript(("AUTH LOGIN",)))
    report = await run(config_for(peer.port, username=USER, password=PASSWORD, tls_mode="none"))
    result = assert_failed_at(report, "auth", "auth.bad_credentials")
    assert result.facts["auth_mechanism_used"] == "LOGIN"


async def test_microsoft_365_smtp_auth_disabled_is_not_a_wrong_password(starttls_auth: ServerAndConfig) -> None:
    """535 5.7.139 comes with the right password too: its own finding, never "check the password"."""
    _, config = starttls_auth(
        "auth=reply:535:5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."
    )
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.smtp_auth_disabled")
    assert result.finding is not None
    assert result.finding.cause.startswith("Microsoft 365 refused SMTP AUTH")
    assert "5.7.139" in result.finding.cause and "password may well be right" in result.finding.cause
    assert "Authenticated SMTP" in result.finding.fix


async def test_microsoft_365_basic_auth_retired(starttls_auth: ServerAndConfig) -> None:
    _, config = starttls_auth("auth=reply:550:5.7.30 Basic authentication is not supported for Client Submission.")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.basic_auth_retired")
    assert result.finding is not None
    assert "no password will work" in result.finding.cause and "XOAUTH2" in result.finding.fix


async def test_gmail_variant_from_the_reply(starttls_auth: ServerAndConfig) -> None:
    """Gmail signs its replies with "gsmtp": the provider is recognised from the text, not only the host."""
    _, config = starttls_auth(
        "auth=reply:535:5.7.8 Username and Password not accepted. For more information, go to "
        "https://support.google.com/mail/?p=BadCredentials a1-20020a05 - gsmtp"
    )
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.bad_credentials")
    assert result.finding is not None
    assert result.finding.cause.startswith("Gmail rejected the username or password")
    assert "App Password" in result.finding.fix


@pytest.mark.parametrize(
    ("host", "starts"),
    [
        ("smtp.gmail.com", "Gmail rejected"),
        ("smtp.googlemail.com", "Gmail rejected"),
        ("email-smtp.eu-west-1.amazonaws.com", "Amazon SES rejected the credentials"),
        ("mail.example.com", "The server rejected the username or password"),
    ],
)
def test_bad_credentials_host_variants(host: str, starts: str) -> None:
    """The host cannot be gmail.com or SES offline: finding_for directly, with the same 535 reply."""
    config = config_for(587, host=host, username=USER, password=PASSWORD)
    finding = finding_for("auth", AuthKind.BAD_CREDENTIALS, config, 535, "5.7.8 Error: authentication failed")
    assert finding.code == "auth.bad_credentials"
    assert finding.cause.startswith(starts)
    if "amazonaws" in host:
        assert host in finding.fix and "IAM" in finding.cause


async def test_app_password_required(starttls_auth: ServerAndConfig) -> None:
    _, config = starttls_auth("auth=reply:534:5.7.9 Application-specific password required")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.app_password_required")
    assert result.finding is not None
    assert '"534 5.7.9 Application-specific password required"' in result.finding.cause
    assert "App Password" in result.finding.fix


async def test_web_login_required(starttls_auth: ServerAndConfig) -> None:
    """Gmail's 534 5.7.14: the sign-in was blocked until the account logs in through a browser."""
    _, config = starttls_auth("auth=reply:534:5.7.14 Please log in via your web browser and then try again")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.app_password_required")
    assert result.finding is not None
    assert "web browser" in result.finding.cause and "security alert" in result.finding.fix


@pytest.mark.parametrize("code", [530, 538])
async def test_tls_required_reply(starttls_auth: ServerAndConfig, code: int) -> None:
    _, config = starttls_auth(f"auth=reply:{code}")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.tls_required")
    assert result.finding is not None
    assert f'refuses AUTH without TLS: "{code} 5.7.' in result.finding.cause
    assert "STARTTLS" in result.finding.fix


async def test_tls_required_when_auth_hides_behind_starttls(starttls_auth: ServerAndConfig) -> None:
    """TLS mode 'none' against a server that offers AUTH only after STARTTLS (aiosmtpd's default)."""
    srv, _ = starttls_auth()
    report = await run(config_for(srv.port, username=USER, password=PASSWORD, tls_mode="none"))
    result = assert_failed_at(report, "auth", "auth.tls_required")
    assert result.facts["auth_mechanisms_offered"] == []
    assert result.finding is not None and "AUTH is not offered before STARTTLS" in result.finding.cause
    assert report.stage("tls").status is Status.WARNING  # plaintext credentials, said first


async def test_mechanism_refused_with_504(starttls_auth: ServerAndConfig) -> None:
    _, config = starttls_auth("auth=reply:504")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.mechanism_unsupported")
    assert result.finding is not None
    assert '("504 5.5.4 Unrecognized authentication type")' in result.finding.cause
    assert "the server offers" not in result.finding.cause


async def test_a_mechanism_refused_with_504_falls_back_to_the_next(starttls_auth: ServerAndConfig) -> None:
    """As mail clients do: PLAIN is advertised but refused as such once, LOGIN then logs in."""
    _, config = starttls_auth("auth#1=reply:504")
    report = await run(config)
    auth = report.stage("auth")
    assert auth.status is Status.PASSED, auth.summary
    assert auth.facts["auth_mechanisms_tried"] == ["PLAIN", "LOGIN"]
    assert auth.facts["auth_mechanism_used"] == "LOGIN"
    assert report.stage("mail_from").status is Status.PASSED
    assert [line.text for line in auth.transcript if line.direction == "C"][:2] == [
        "AUTH PLAIN ********",
        "AUTH LOGIN ********",
    ]


async def test_only_an_unsupported_mechanism_offered(start_peer: Callable[..., Awaitable[Peer]]) -> None:
    script = SmtpScript(("AUTH XOAUTH2",))
    peer = await start_peer(script)
    report = await run(config_for(peer.port, username=USER, password=PASSWORD, tls_mode="none"))
    result = assert_failed_at(report, "auth", "auth.mechanism_unsupported")
    assert "XOAUTH2" in result.summary
    assert result.finding is not None
    assert "(the server offers only XOAUTH2)" in result.finding.cause
    assert "OAuth" in result.finding.fix
    assert not any(line.startswith("AUTH") for line in script.lines)  # nothing was tried


async def test_temporary(starttls_auth: ServerAndConfig) -> None:
    _, config = starttls_auth("auth=reply:454")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.temporary")
    assert result.finding is not None
    assert '"454 4.7.0 Temporary authentication failure"' in result.finding.cause
    assert "Retry" in result.finding.fix


async def test_other_refusals_are_auth_failed(starttls_auth: ServerAndConfig) -> None:
    _, config = starttls_auth("auth=reply:554:5.7.1 Account suspended")
    report = await run(config)
    result = assert_failed_at(report, "auth", "auth.failed")
    assert result.finding is not None
    assert result.finding.cause == 'Authentication failed: "554 5.7.1 Account suspended".'


async def test_anonymous_skips_auth_and_says_what_is_offered(starttls_auth: ServerAndConfig) -> None:
    srv, config = starttls_auth()
    anonymous = config_for(srv.port, ca_bundle=config.ca_bundle)
    report = await run(anonymous)
    auth = report.stage("auth")
    assert auth.status is Status.SKIPPED and auth.finding is None
    assert auth.summary == (
        "No credentials configured (anonymous SMTP); the server offers AUTH CRAM-MD5 LOGIN PLAIN."
    )
