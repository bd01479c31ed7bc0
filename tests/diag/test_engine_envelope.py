"""The envelope stages (mail_from, rcpt_to, send) through `diag.runner.run` against FakeSMTP.

Provider-specific replies (Microsoft 365 SendAsDenied, Amazon SES "not verified") are produced with fault
rules carrying the provider's reply text; the finding is chosen from that text.
"""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes
from email.message import Message as EmailMessage
from typing import Any

import pytest

from diag.config import SmtpConfig
from diag.report import Status
from diag.runner import run
from fake_smtp import FakeSMTP, parse_fault
from tests.diag.conftest import (
    FROM,
    PASSWORD,
    RECIPIENT,
    USER,
    assert_failed_at,
    config_for,
)

Start = Callable[..., FakeSMTP]


def authenticated(srv: FakeSMTP, **more: Any) -> SmtpConfig:
    """Credentials over plaintext (TLS mode none): the envelope is what these tests look at."""
    return config_for(srv.port, username=USER, password=PASSWORD, tls_mode="none", **more)


def auth_server(fake_smtp_factory: Start, *faults: str, **options: object) -> FakeSMTP:
    return fake_smtp_factory(
        auth="required", username=USER, password=PASSWORD, faults=[parse_fault(f) for f in faults], **options
    )


# -- mail_from -----------------------------------------------------------------------------------------


async def test_mail_from_passes_and_sends_nothing(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory)
    report = await run(authenticated(srv))
    result = report.stage("mail_from")
    assert result.status is Status.PASSED
    assert result.summary == f"The server accepts {FROM} as sender."
    assert result.facts["mail_from_reply"].startswith("250")
    assert [line.text for line in result.transcript if line.direction == "C"] == [f"MAIL FROM:<{FROM}>"]
    probe = report.stage("rcpt_to")
    assert probe.status is Status.PASSED
    # No DATA and no RSET: the run's QUIT ends the transaction.
    assert [line.text for line in probe.transcript if line.direction == "C"] == [f"RCPT TO:<{FROM}>"]
    assert report.stage("send").status is Status.SKIPPED
    assert srv.messages == []


async def test_anonymous_against_an_authenticating_server(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory)
    report = await run(config_for(srv.port, tls_mode="none"))
    result = assert_failed_at(report, "mail_from", "mail_from.auth_required")
    assert result.summary == f"The server refused the sender {FROM}: 530 5.7.0 Authentication required."
    assert result.finding is not None
    assert "no username and password are configured" in result.finding.cause
    assert result.finding.fix == "Enter the SMTP account's username and password."


async def test_plaintext_against_a_server_that_requires_starttls(fake_smtp_factory: Start) -> None:
    """530 "Must issue a STARTTLS command first" is about TLS, not credentials: the fix is the TLS mode."""
    srv = fake_smtp_factory(auth="none", tls="starttls", require_starttls=True)
    report = await run(config_for(srv.port, tls_mode="none"))
    result = assert_failed_at(report, "mail_from", "mail_from.tls_required")
    assert result.finding is not None
    assert "Must issue a STARTTLS command first" in result.finding.cause
    assert "TLS mode" in result.finding.fix and "username" not in result.finding.fix
    assert srv.messages == []


async def test_authenticated_yet_auth_required_at_mail_from(fake_smtp_factory: Start) -> None:
    """Microsoft 365 answers 5.7.57 when the login did not count for sending."""
    srv = auth_server(
        fake_smtp_factory,
        "mail_from=reply:530:5.7.57 Client not authenticated to send mail. Error: 535 5.7.139",
    )
    report = await run(authenticated(srv))
    result = assert_failed_at(report, "mail_from", "mail_from.auth_required")
    assert result.finding is not None
    assert "still wants authentication" in result.finding.cause and "5.7.57" in result.finding.fix


@pytest.mark.parametrize("code", [550, 553])
async def test_sender_rejected(fake_smtp_factory: Start, code: int) -> None:
    srv = auth_server(fake_smtp_factory, f"mail_from=reply:{code}")
    report = await run(authenticated(srv))
    result = assert_failed_at(report, "mail_from", "mail_from.sender_rejected")
    assert result.finding is not None
    assert f"refused the sender {FROM} (\"{code} 5.7.1 Sender address rejected" in result.finding.cause
    assert f"allow {FROM}" in result.finding.fix


async def test_sender_rejected_microsoft_send_as(fake_smtp_factory: Start) -> None:
    srv = auth_server(
        fake_smtp_factory,
        "mail_from=reply:550:5.7.60 SMTP; Client does not have permissions to send as this sender",
    )
    report = await run(authenticated(srv))
    result = assert_failed_at(report, "mail_from", "mail_from.sender_rejected")
    assert result.finding is not None
    assert result.finding.cause.startswith(f"Microsoft 365 refused the From address {FROM}")
    assert f"{USER} has no Send As permission" in result.finding.cause
    assert f"grant {USER} 'Send As' on {FROM}" in result.finding.fix


async def test_sender_rejected_microsoft_send_as_reads_well_without_a_username(fake_smtp_factory: Start) -> None:
    srv = fake_smtp_factory(faults=[parse_fault("mail_from=reply:550:5.7.60 SendAsDenied")])
    report = await run(config_for(srv.port, tls_mode="none"))
    result = assert_failed_at(report, "mail_from", "mail_from.sender_rejected")
    assert result.finding is not None
    assert "the SMTP account has no Send As permission" in result.finding.cause
    assert "  " not in result.finding.cause + result.finding.fix


async def test_sender_rejected_amazon_ses_not_verified(fake_smtp_factory: Start) -> None:
    srv = auth_server(
        fake_smtp_factory,
        "mail_from=reply:554:Message rejected: Email address is not verified. The following identities "
        f"failed the check in region US-EAST-1: {FROM}",
    )
    report = await run(authenticated(srv))
    result = assert_failed_at(report, "mail_from", "mail_from.sender_rejected")
    assert result.finding is not None
    assert result.finding.cause.startswith(f"Amazon SES refused {FROM}")
    assert "not verified in this SES region" in result.finding.cause
    assert f"Verify {FROM} or its domain in the SES console" in result.finding.fix


async def test_mail_from_syntax(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory, "mail_from=reply:501")
    report = await run(authenticated(srv))
    result = assert_failed_at(report, "mail_from", "mail_from.syntax")
    assert result.finding is not None
    assert f"MAIL FROM syntax for {FROM}" in result.finding.cause and "SMTPUTF8" in result.finding.fix


@pytest.mark.parametrize("code", [421, 450, 451, 452])
async def test_mail_from_temporary(fake_smtp_factory: Start, code: int) -> None:
    srv = auth_server(fake_smtp_factory, f"mail_from=reply:{code}")
    report = await run(authenticated(srv))
    result = assert_failed_at(report, "mail_from", "mail_from.temporary")
    assert result.finding is not None
    assert f'temporarily refused the sender ("{code} ' in result.finding.cause


async def test_mail_from_other_refusal(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory, "mail_from=reply:552:5.3.4 Message size exceeds fixed maximum")
    report = await run(authenticated(srv))
    result = assert_failed_at(report, "mail_from", "mail_from.rejected")
    assert result.finding is not None and '"552 5.3.4 Message size exceeds' in result.finding.cause


# -- rcpt_to -------------------------------------------------------------------------------------------


async def test_relay_denied(fake_smtp_factory: Start) -> None:
    srv = fake_smtp_factory(faults=[parse_fault("rcpt_to=reply:554")])
    report = await run(config_for(srv.port, tls_mode="none", recipient=RECIPIENT))
    result = assert_failed_at(report, "rcpt_to", "rcpt_to.relay_denied")
    assert result.summary == f"The server refused the recipient {RECIPIENT}: 554 5.7.1 Relay access denied."
    assert result.finding is not None
    assert "refuses to relay" in result.finding.cause and "authenticated SMTP" in result.finding.fix


async def test_unknown_recipient(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory, "rcpt_to=reply:550")
    report = await run(authenticated(srv, recipient=RECIPIENT))
    result = assert_failed_at(report, "rcpt_to", "rcpt_to.unknown_recipient")
    assert result.finding is not None
    assert '"550 5.1.1 Recipient address rejected: User unknown' in result.finding.cause


@pytest.mark.parametrize("code", [450, 451])
async def test_recipient_temporary_greylisting(fake_smtp_factory: Start, code: int) -> None:
    srv = auth_server(fake_smtp_factory, f"rcpt_to=reply:{code}:4.7.1 Greylisted, try again later")
    report = await run(authenticated(srv, recipient=RECIPIENT))
    result = assert_failed_at(report, "rcpt_to", "rcpt_to.temporary")
    assert result.finding is not None
    assert "Greylisted" in result.finding.cause and "greylisting" in result.finding.fix


async def test_recipient_other_refusal(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory, "rcpt_to=reply:552:5.2.2 Mailbox full")
    report = await run(authenticated(srv, recipient=RECIPIENT))
    result = assert_failed_at(report, "rcpt_to", "rcpt_to.rejected")
    assert result.finding is not None and "Mailbox full" in result.finding.cause


async def test_recipient_accepted_but_no_message_without_send(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory)
    report = await run(authenticated(srv, recipient=RECIPIENT))
    assert report.verdict == "valid"
    rcpt = report.stage("rcpt_to")
    assert rcpt.status is Status.PASSED and rcpt.facts["recipient"] == RECIPIENT
    assert [line.text for line in rcpt.transcript if line.direction == "C"] == [f"RCPT TO:<{RECIPIENT}>"]
    assert report.stage("send").status is Status.SKIPPED
    assert report.stage("send").summary == "Sending a test message was not requested."
    assert srv.messages == []


# -- send ----------------------------------------------------------------------------------------------


async def test_a_real_test_message_is_delivered(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory)
    report = await run(authenticated(srv, recipient=RECIPIENT, send_test_message=True))
    assert report.verdict == "valid"
    send = report.stage("send")
    assert send.status is Status.PASSED
    assert send.summary.startswith(f"Test message accepted for {RECIPIENT}: 250 ")
    (message,) = srv.wait_for_messages(1)
    assert message.mail_from == FROM and list(message.rcpt_tos) == [RECIPIENT]
    assert message.auth_user == USER
    parsed: EmailMessage = message_from_bytes(message.raw)
    assert parsed["Subject"] == "smtp-diag test message"
    assert parsed["From"] == FROM and parsed["To"] == RECIPIENT
    assert parsed["Message-ID"] and parsed["Date"]
    assert send.facts["message_bytes"] == len(message.raw.replace(b"\r\n", b"\n"))  # sent with LF, got CRLF


async def test_send_rejected(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory, "end_of_data=reply:554")
    report = await run(authenticated(srv, recipient=RECIPIENT, send_test_message=True))
    result = assert_failed_at(report, "send", "send.rejected")
    assert result.finding is not None
    assert '"554 5.7.1 Message rejected: content policy violation"' in result.finding.cause
    assert "SPF and DKIM" in result.finding.fix
    assert srv.messages == []


async def test_send_rejected_amazon_ses_not_verified(fake_smtp_factory: Start) -> None:
    srv = auth_server(
        fake_smtp_factory,
        "end_of_data=reply:554:Message rejected: Email address is not verified. The following identities "
        f"failed the check in region EU-WEST-1: {RECIPIENT}",
    )
    report = await run(authenticated(srv, recipient=RECIPIENT, send_test_message=True))
    result = assert_failed_at(report, "send", "send.sender_not_verified")
    assert result.finding is not None
    assert result.finding.cause.startswith("Amazon SES rejected the message")
    assert f"Verify {FROM}" in result.finding.fix


async def test_send_too_large(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory, max_size=64)
    report = await run(authenticated(srv, recipient=RECIPIENT, send_test_message=True))
    result = assert_failed_at(report, "send", "send.too_large")
    assert result.facts["data_reply"].startswith("552 ")
    assert result.finding is not None
    assert "larger than the server accepts" in result.finding.cause
    assert "size limit" in result.finding.fix
    assert srv.messages == []


async def test_send_temporary(fake_smtp_factory: Start) -> None:
    srv = auth_server(fake_smtp_factory, "end_of_data=reply:451")
    report = await run(authenticated(srv, recipient=RECIPIENT, send_test_message=True))
    result = assert_failed_at(report, "send", "send.temporary")
    assert result.finding is not None and '"451 ' in result.finding.cause


async def test_send_as_denied_at_the_end_of_data(fake_smtp_factory: Start) -> None:
    """Microsoft 365 takes MAIL FROM and RCPT TO, then refuses the message: a check that stops at MAIL FROM
    passes, real mail fails. Our finding names the login, the From and the Send As permission."""
    denied = f"end_of_data=reply:554:5.2.252 SendAsDenied; {USER} not allowed to send as {FROM}"
    srv = auth_server(fake_smtp_factory, denied)
    report = await run(authenticated(srv, recipient=RECIPIENT, send_test_message=True))
    result = assert_failed_at(report, "send", "send.send_as_denied")
    assert result.finding is not None
    assert f"may not send as {FROM}" in result.finding.cause and "Send As permission" in result.finding.fix
