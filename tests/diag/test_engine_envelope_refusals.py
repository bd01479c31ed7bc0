"""What real MTAs showed (issue 10, item 6), and Microsoft 365's facts (item 5), against FakeSMTP.

The replies are Postfix 3.7.11's (with Dovecot 2.3.19 SASL), copied from a real Postfix configured as sites
are: `smtpd_sender_login_maps` + `reject_sender_login_mismatch`, `permit_sasl_authenticated, reject` on the
submission port, `permit_mynetworks, reject_unauth_destination` on a relay, and the default
`smtpd_delay_reject=yes`, which says every sender and client refusal only at RCPT TO (docs/stages.md,
"What real MTAs showed"). FakeSMTP's `auth="offered"` plays Postfix's submission port: AUTH advertised, mail
taken without it, the address rules refusing at RCPT TO in Postfix's words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from diag.config import SmtpConfig
from diag.report import Report, StageResult, Status
from diag.runner import run
from fake_smtp import FakeSMTP
from tests.diag.conftest import FROM, PASSWORD, RECIPIENT, USER, config_for

Start = Callable[..., FakeSMTP]

NOT_OWNED = f"553 5.7.1 <{{mail_from}}>: Sender address rejected: not owned by user {USER}"
NOT_LOGGED_IN = "553 5.7.1 <{mail_from}>: Sender address rejected: not logged in"
CLIENT_DENIED = "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied"
RECIPIENT_DENIED = "554 5.7.1 <{rcpt}>: Recipient address rejected: Access denied"
RELAY_DENIED = "554 5.7.1 <{rcpt}>: Relay access denied"
DOMAIN_NOT_FOUND = "553 5.1.8 <{mail_from}>: Sender address rejected: Domain not found"
USER_UNKNOWN = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in local recipient table"
M365_HOST = "SN4PR0601CA0001.outlook.office365.com"  # how Microsoft 365 greets, whatever name was dialled


def server(start: Start, auth: str, *rules: str, **options: Any) -> FakeSMTP:
    login = {"username": USER, "password": PASSWORD} if auth != "none" else {}
    return start(auth=auth, address_rules=list(rules), **login, **options)


def config(srv: FakeSMTP, *, logged_in: bool, **more: Any) -> SmtpConfig:
    """TLS mode none: the envelope is what these tests look at."""
    login = {"username": USER, "password": PASSWORD} if logged_in else {}
    return config_for(srv.port, tls_mode="none", **login, **more)


def client_lines(result: StageResult) -> list[str]:
    return [line.text for line in result.transcript if line.direction == "C"]


def refused(report: Report, code: str) -> StageResult:
    result = report.stage("rcpt_to")
    assert result.status is Status.FAILED, (result.status, result.summary)
    assert result.finding is not None and result.finding.code == code, result.finding
    assert report.verdict == "invalid"
    return result


# -- without a test recipient, RCPT TO still runs, with the From address ---------------------------------


async def test_a_from_the_account_does_not_own_is_caught_without_a_recipient(fake_smtp_factory: Start) -> None:
    """Postfix took MAIL FROM and refused the sender only at RCPT TO: without a recipient this was "valid"."""
    srv = server(fake_smtp_factory, "required", "rcpt:*=" + NOT_OWNED)
    report = await run(config(srv, logged_in=True, from_email="ceo@example.com"))
    result = refused(report, "mail_from.sender_rejected")
    assert client_lines(result) == ["RCPT TO:<ceo@example.com>"]  # never DATA, no RSET: QUIT ends it
    assert result.facts["recipient_probed"] == "ceo@example.com"
    assert "RCPT TO the From address ceo@example.com was asked" in result.summary
    assert "not owned by user" in result.summary
    assert result.finding is not None and "relay" not in result.finding.fix.lower()
    assert "From Email" in result.finding.fix
    assert report.stage("send").status is Status.SKIPPED
    assert srv.messages == []


async def test_an_anonymous_client_on_a_submission_port_is_caught_without_a_recipient(
    fake_smtp_factory: Start,
) -> None:
    srv = server(fake_smtp_factory, "offered", "rcpt:*=" + NOT_LOGGED_IN)
    report = await run(config(srv, logged_in=False))
    result = refused(report, "mail_from.auth_required")
    assert result.finding is not None
    assert result.finding.fix == "Enter the SMTP account's username and password."
    assert "not logged in" in result.finding.cause
    assert client_lines(result) == [f"RCPT TO:<{FROM}>"]
    assert srv.messages == []


async def test_the_probe_passes_and_says_what_it_probed(fake_smtp_factory: Start) -> None:
    srv = server(fake_smtp_factory, "required")
    report = await run(config(srv, logged_in=True))
    result = report.stage("rcpt_to")
    assert result.status is Status.PASSED
    assert result.facts["recipient_probed"] == FROM
    assert result.facts["probe"] == "RCPT TO the From address; no DATA"
    assert result.summary.startswith(f"No test recipient configured: RCPT TO the From address {FROM} was accepted")
    assert report.verdict == "valid" and srv.messages == []


async def test_a_from_unknown_as_a_mailbox_leaves_the_probe_a_warning(fake_smtp_factory: Start) -> None:
    """Servers check the client and the sender before the recipient exists: a no-reply From that is no
    mailbox says nothing against the configuration, so the run stays valid, with a warning."""
    srv = server(fake_smtp_factory, "required", "rcpt:*=" + USER_UNKNOWN)
    report = await run(config(srv, logged_in=True))
    result = report.stage("rcpt_to")
    assert result.status is Status.WARNING
    assert result.finding is not None and result.finding.code == "rcpt_to.unknown_recipient"
    assert f"the From address {FROM}" in result.finding.cause
    assert "test recipient" in result.finding.fix
    assert report.verdict == "valid"


# -- refusals read by their words, at whichever step the server says them -----------------------------


CASES = [
    # (id, server auth, credentials configured, Postfix's reply, the finding)
    ("sender-not-owned", "required", True, NOT_OWNED, "mail_from.sender_rejected"),
    ("not-logged-in", "offered", False, NOT_LOGGED_IN, "mail_from.auth_required"),
    ("client-denied-auth-offered", "offered", False, CLIENT_DENIED, "mail_from.auth_required"),
    ("recipient-denied-auth-offered", "offered", False, RECIPIENT_DENIED, "mail_from.auth_required"),
    ("client-denied-no-auth", "none", False, CLIENT_DENIED, "mail_from.client_rejected"),
    ("relay-denied", "none", False, RELAY_DENIED, "rcpt_to.relay_denied"),
]
# With a test recipient, relay denial was read right before: only the probe is new there.
READ_RIGHT_BEFORE = {("relay-denied", True)}


@pytest.mark.parametrize(
    ("auth", "logged_in", "reply", "code", "with_recipient"),
    [
        pytest.param(*case, recipient, id=f"{name}-{'recipient' if recipient else 'probe'}")
        for name, *case in CASES
        for recipient in (True, False)
        if (name, recipient) not in READ_RIGHT_BEFORE
    ],
)
async def test_postfix_refusals_at_rcpt_to(
    fake_smtp_factory: Start, auth: str, logged_in: bool, reply: str, code: str, with_recipient: bool
) -> None:
    srv = server(fake_smtp_factory, auth, "rcpt:*=" + reply)
    more = {"recipient": "bob@example.com"} if with_recipient else {}
    report = await run(config(srv, logged_in=logged_in, from_email="ceo@example.com", **more))
    result = refused(report, code)
    assert result.finding is not None
    fix = result.finding.fix
    if code != "rcpt_to.relay_denied":
        assert "relay" not in fix.lower(), fix
        assert "the recipient" not in result.summary.split(":")[0]
    if code == "mail_from.auth_required":
        assert fix == "Enter the SMTP account's username and password."
    if code == "mail_from.client_rejected":
        assert "this machine's address" in fix


@pytest.mark.parametrize(
    ("auth", "reply", "code"),
    [
        pytest.param("offered", NOT_LOGGED_IN, "mail_from.auth_required", id="not-logged-in"),
        pytest.param("none", CLIENT_DENIED, "mail_from.client_rejected", id="client-denied"),
    ],
)
async def test_the_same_refusals_at_mail_from(fake_smtp_factory: Start, auth: str, reply: str, code: str) -> None:
    """Postfix with smtpd_delay_reject=no says them at MAIL FROM: the same reading."""
    srv = server(fake_smtp_factory, auth, "from:*=" + reply)
    report = await run(config(srv, logged_in=False))
    result = report.stage("mail_from")
    assert result.status is Status.FAILED
    assert result.finding is not None and result.finding.code == code


async def test_a_sender_refused_to_an_anonymous_client_names_no_account(fake_smtp_factory: Start) -> None:
    """There is no account to own the From: the fix says so instead of "an address the account owns"."""
    srv = server(fake_smtp_factory, "none", "rcpt:*=" + DOMAIN_NOT_FOUND)
    report = await run(config(srv, logged_in=False, recipient=RECIPIENT))
    result = refused(report, "mail_from.sender_rejected")
    assert result.finding is not None
    assert "account owns" not in result.finding.fix
    assert "without a login" in result.finding.fix


# -- Microsoft 365 ---------------------------------------------------------------------------------------


async def test_a_password_login_to_microsoft_365_warns_that_it_ends(fake_smtp_factory: Start) -> None:
    srv = server(fake_smtp_factory, "required", hostname=M365_HOST)
    report = await run(config(srv, logged_in=True, from_email=USER))
    auth = report.stage("auth")
    assert auth.status is Status.WARNING
    assert auth.finding is not None and auth.finding.code == "auth.basic_auth_ending"
    assert "end of December 2026" in auth.finding.cause and "550 5.7.30" in auth.finding.cause
    assert "relay" in auth.finding.fix and "SmtpClientAuthenticationDisabled" in auth.finding.fix
    assert report.verdict == "valid"
    assert report.stage("mail_from").status is Status.PASSED  # From is the login: nothing to prove
    # Other servers get no such warning.
    other = server(fake_smtp_factory, "required")
    assert (await run(config(other, logged_in=True))).stage("auth").status is Status.PASSED


async def test_a_from_other_than_the_login_at_microsoft_365_warns_at_mail_from(fake_smtp_factory: Start) -> None:
    srv = server(fake_smtp_factory, "required", hostname=M365_HOST)
    report = await run(config(srv, logged_in=True, from_email="noreply@example.com"))
    result = report.stage("mail_from")
    assert result.status is Status.WARNING
    assert result.finding is not None and result.finding.code == "mail_from.send_as_unproven"
    assert "5.2.252" in result.finding.cause
    assert "test message" in result.finding.fix
    assert report.verdict == "valid"
    # A test message proves it (or fails at send.send_as_denied): no warning then.
    sent = await run(
        config(srv, logged_in=True, from_email="noreply@example.com", recipient=RECIPIENT, send_test_message=True)
    )
    assert sent.stage("mail_from").status is Status.PASSED and sent.stage("send").status is Status.PASSED
    # Nor at other servers.
    other = server(fake_smtp_factory, "required")
    assert (await run(config(other, logged_in=True, from_email="noreply@example.com"))).stage(
        "mail_from"
    ).status is Status.PASSED
