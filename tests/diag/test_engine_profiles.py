"""Client profiles through `diag.runner.run` (issue 10, item 1): under `palette` and `palette-vertex` the
engine behaves as the product's Go client (gomail v2 over net/smtp) would, against real peers on loopback.

A host that is not "localhost" to Go's net/smtp is needed for its plaintext refusal: 127.0.0.2 is loopback
on Linux but not one of the names net/smtp exempts (localhost, 127.0.0.1, ::1).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from diag.config import SmtpConfig
from diag.input_problems import input_problems
from diag.profiles import gomail_auth_pick
from diag.report import Status
from diag.runner import run
from fake_smtp import FakeSMTP
from tests import certs
from tests.diag.conftest import PASSWORD, USER, assert_failed_at, config_for, tls_server
from tests.peer import Peer, SmtpScript

NOT_LOCALHOST = "127.0.0.2"


def palette(port: int, **more: Any) -> SmtpConfig:
    more.setdefault("profile", "palette")
    return config_for(port, **more)


async def test_plain_over_plaintext_is_refused_and_the_password_never_leaves() -> None:
    script = SmtpScript(("AUTH PLAIN LOGIN",), replies={"AUTH": "235 2.7.0 Authentication successful"})
    async with Peer(script, host=NOT_LOCALHOST) as peer:
        report = await run(palette(peer.port, host=NOT_LOCALHOST, username=USER, password=PASSWORD))
    tls = report.stage("tls")
    assert tls.status is Status.WARNING and tls.finding is not None
    assert tls.finding.code == "tls.starttls_not_offered"  # the Go client goes on in plaintext
    result = assert_failed_at(report, "auth", "auth.unencrypted_refused")
    assert result.facts["auth_mechanism_used"] == "PLAIN"
    assert not [line for line in script.lines if line.upper().startswith("AUTH")]
    assert PASSWORD not in " ".join(script.lines)


async def test_generic_stops_at_tls_for_the_same_server() -> None:
    """The same server under the generic profile: credentials never go in clear, so tls fails."""
    script = SmtpScript(("AUTH PLAIN LOGIN",))
    async with Peer(script, host=NOT_LOCALHOST) as peer:
        report = await run(config_for(peer.port, host=NOT_LOCALHOST, username=USER, password=PASSWORD))
    assert_failed_at(report, "tls", "tls.starttls_not_offered")


async def test_plain_over_plaintext_to_localhost_is_sent_as_go_does() -> None:
    script = SmtpScript(("AUTH PLAIN",), replies={"AUTH": "235 2.7.0 Authentication successful"})
    async with Peer(script) as peer:
        report = await run(palette(peer.port, username=USER, password=PASSWORD))
    auth = report.stage("auth")
    assert auth.status is Status.PASSED, auth.summary
    assert auth.facts["auth_mechanism_used"] == "PLAIN"
    assert [line for line in script.lines if line.startswith("AUTH PLAIN")]


async def test_login_is_picked_when_plain_is_not_offered() -> None:
    script = SmtpScript(("AUTH LOGIN",), replies={"AUTH": "235 2.7.0 Authentication successful"})
    async with Peer(script, host=NOT_LOCALHOST) as peer:
        report = await run(palette(peer.port, host=NOT_LOCALHOST, username=USER, password=PASSWORD))
    auth = report.stage("auth")
    assert auth.status is Status.PASSED and auth.facts["auth_mechanism_used"] == "LOGIN"


async def test_a_username_without_auth_offered_is_ignored_with_a_warning() -> None:
    async with Peer(SmtpScript(("SIZE 1000000",))) as peer:
        report = await run(palette(peer.port, username=USER, password=PASSWORD))
    auth = report.stage("auth")
    assert auth.status is Status.WARNING and auth.finding is not None
    assert auth.finding.code == "auth.username_ignored"
    assert report.stage("mail_from").status is Status.PASSED  # the product goes on without AUTH
    assert report.verdict == "valid"


async def test_starttls_when_offered_and_gomail_picks_cram_md5(
    fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path
) -> None:
    """FakeSMTP offers CRAM-MD5, LOGIN and PLAIN over STARTTLS: gomail takes CRAM-MD5 where we take PLAIN. Its
    certificate is from a test CA the system does not trust, so only Insecure Skip TLS Verify gets past TLS."""
    files = certs.ca_issued(cert_dir)
    srv = tls_server(fake_smtp_factory, files, tls="starttls", auth="required", username=USER, password=PASSWORD)
    report = await run(palette(srv.port, username=USER, password=PASSWORD, insecure_skip_tls_verify=True))
    assert report.stage("tls").facts["tls_how"] == "STARTTLS"
    auth = report.stage("auth")
    assert auth.status is Status.PASSED and auth.facts["auth_mechanism_used"] == "CRAM-MD5"


async def test_an_untrusted_certificate_is_fixed_in_the_product_words(
    fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path
) -> None:
    files = certs.ca_issued(cert_dir)
    srv = tls_server(fake_smtp_factory, files, tls="starttls")
    palette_report = await run(palette(srv.port))
    vertex_report = await run(palette(srv.port, profile="palette-vertex"))
    for report in (palette_report, vertex_report):
        result = report.stage("tls")
        assert result.status is Status.FAILED and result.finding is not None
        assert "CA bundle" not in result.finding.fix and "system's CAs" in result.finding.fix
    assert "Insecure Skip TLS Verify" in palette_report.stage("tls").finding.fix  # type: ignore[union-attr]
    assert "Insecure Skip" not in vertex_report.stage("tls").finding.fix  # type: ignore[union-attr]


def test_port_465_is_implicit_tls() -> None:
    """No TLS mode under palette: implicit TLS is the port's (465), as gomail's NewDialer sets SSL."""
    config = palette(465, insecure_skip_tls_verify=True)
    assert config.effective_tls_mode.value == "implicit"
    assert palette(587).effective_tls_mode.value == "starttls"


@pytest.mark.parametrize(
    ("profile", "field", "value"),
    [
        ("palette", "tls_mode", "none"),
        ("palette", "ca_bundle", "-----BEGIN CERTIFICATE-----"),
        ("palette-vertex", "insecure_skip_tls_verify", True),
    ],
)
async def test_settings_the_form_lacks_are_refused(profile: str, field: str, value: object) -> None:
    data = {"host": "127.0.0.1", "port": 587, "from_email": "a@example.com", "profile": profile, field: value}
    problems = {p.field: p.message for p in input_problems(data)}
    assert field in problems and "generic profile" in problems[field]
    if field != "ca_bundle":  # a Python caller's config: the config stage refuses it before the network
        report = await run(palette(1, profile=profile, **{field: value}))
        assert_failed_at(report, "config", "config.not_in_profile")


def test_gomail_auth_pick() -> None:
    assert gomail_auth_pick(["PLAIN", "LOGIN", "CRAM-MD5"]) == "CRAM-MD5"
    assert gomail_auth_pick(["LOGIN"]) == "LOGIN"
    assert gomail_auth_pick(["LOGIN", "PLAIN"]) == "PLAIN"
    assert gomail_auth_pick(["XOAUTH2"]) == "PLAIN"  # gomail tries PLAIN whatever is offered
    assert gomail_auth_pick([]) is None
