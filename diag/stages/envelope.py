"""The envelope stages: MAIL FROM with the configured From, then optionally RCPT TO and a real message.

MAIL FROM always runs: "connection OK" tools that stop before it pass configurations that fail later on
the sender. Without a test message nothing is ever sent: no DATA follows, and the run's QUIT ends the
transaction (RFC 5321 4.1.1.10), so no RSET is said before it (a round trip nothing reads; issue 13).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final

from diag.kinds import Kind, MailFromKind, RcptToKind, SendKind
from diag.probe import Reply
from diag.stages.base import Outcome, RunContext
from diag.transport import ProbeError

TEST_SUBJECT: Final = "smtp-diag test message"


def _enhanced(text: str) -> str:
    first = text.split(" ", 1)[0]
    return first if first[:1].isdigit() and first.count(".") == 2 else ""


def mail_from_kind(reply: Reply) -> MailFromKind:
    enhanced = _enhanced(reply.text)
    if (reply.code in (530, 538) and "starttls" in reply.text.lower()) or enhanced == "5.7.11":
        return MailFromKind.TLS_REQUIRED
    if reply.code == 530 or (enhanced in ("5.7.0", "5.7.57") and "auth" in reply.text.lower()):
        return MailFromKind.AUTH_REQUIRED
    if reply.code in (501, 555) or enhanced == "5.5.4" or enhanced == "5.1.7":
        return MailFromKind.SYNTAX
    if 400 <= reply.code < 500:
        return MailFromKind.TEMPORARY
    if reply.code in (550, 553, 554, 551) or enhanced.startswith("5.7") or enhanced.startswith("5.1"):
        return MailFromKind.SENDER_REJECTED
    return MailFromKind.REJECTED


def rcpt_kind(reply: Reply) -> RcptToKind:
    text = reply.text.lower()
    enhanced = _enhanced(reply.text)
    if 400 <= reply.code < 500:
        return RcptToKind.TEMPORARY
    if "relay" in text or enhanced == "5.7.1":
        return RcptToKind.RELAY_DENIED
    if enhanced in ("5.1.1", "5.1.10") or "unknown" in text or "does not exist" in text or "no such" in text:
        return RcptToKind.UNKNOWN_RECIPIENT
    return RcptToKind.REJECTED


@dataclass(frozen=True, slots=True)
class AddressCommand:
    """MAIL FROM or RCPT TO: the command, the replies that accept, what a refusal means, and the words."""

    verb: str
    accepted: tuple[int, ...]
    kind_of: Callable[[Reply], Kind]
    role: str  # "sender" / "recipient"
    fact: str  # the fact that names the address


MAIL_FROM: Final = AddressCommand("MAIL FROM", (250,), mail_from_kind, "sender", "from_email")
RCPT_TO: Final = AddressCommand("RCPT TO", (250, 251), rcpt_kind, "recipient", "recipient")


async def check_mail_from(ctx: RunContext) -> Outcome:
    config = ctx.config
    return await _address_check(ctx, MAIL_FROM, config.from_email)


async def check_rcpt_to(ctx: RunContext) -> Outcome:
    config = ctx.config
    if not config.recipient:
        return Outcome.skipped("No test recipient configured.")
    return await _address_check(ctx, RCPT_TO, config.recipient)


async def _address_check(ctx: RunContext, command: AddressCommand, address: str) -> Outcome:
    refused = f"The server refused the {command.role} {address}"
    result = await _step(ctx, command.verb, f"{command.verb}:<{address}>", command.accepted, command.kind_of, refused)
    if isinstance(result, Outcome):
        return result
    reply_fact = command.verb.lower().replace(" ", "_") + "_reply"
    return Outcome.passed(
        f"The server accepts {address} as {command.role}.", **{reply_fact: str(result), command.fact: address}
    )


async def check_send(ctx: RunContext) -> Outcome:
    config = ctx.config
    if not config.send_test_message:
        return Outcome.skipped("Sending a test message was not requested.")
    assert config.recipient is not None
    message = test_message(config.from_email, config.recipient, ctx.run_id)
    result = await _step(ctx, "DATA", message, (250,), data_kind, "The server refused the test message")
    if isinstance(result, Outcome):
        result.facts["message_bytes"] = len(message)
        return result
    return Outcome.passed(
        f"Test message accepted for {config.recipient}: {result}.", data_reply=str(result), message_bytes=len(message)
    )


def data_kind(reply: Reply) -> SendKind:
    if reply.code == 552:
        return SendKind.TOO_LARGE
    if 400 <= reply.code < 500:
        return SendKind.TEMPORARY
    text = reply.text.lower()
    if _enhanced(reply.text) == "5.2.252" or "sendasdenied" in text:
        return SendKind.SEND_AS_DENIED  # Microsoft 365 checks Send As at the end of DATA, not at MAIL FROM
    if "not verified" in text:
        return SendKind.SENDER_NOT_VERIFIED
    return SendKind.REJECTED


async def _step(
    ctx: RunContext,
    what: str,
    payload: str | bytes,
    accepted: tuple[int, ...],
    kind_of: Callable[[Reply], Kind],
    refused: str,
) -> Reply | Outcome:
    """One envelope command (a line, or a whole message for DATA): the accepted reply, or the failed outcome."""
    probe = ctx.probe
    assert probe is not None, "the connect stage sets the probe"
    try:
        reply = await (probe.data(payload) if isinstance(payload, bytes) else probe.command(payload))
    except ProbeError as error:
        return Outcome.failed(f"{what} failed: {error.message}.", error.finding_kind, detail=error.message)
    if reply.code in accepted:
        return reply
    key = what.lower().replace(" ", "_") + "_reply"
    return Outcome.failed(f"{refused}: {reply}.", kind_of(reply), reply=reply, **{key: str(reply)})


def test_message(from_email: str, recipient: str, run_id: str) -> bytes:
    """The test message: our fixed text, nothing a user typed in it but the two addresses the envelope
    already carries, so a service that sends it cannot be made to carry anybody's content."""
    msg = EmailMessage()
    msg["From"] = from_email
    msg["To"] = recipient
    msg["Subject"] = TEST_SUBJECT
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain="smtp-diag.invalid")
    msg.set_content(
        f"This is a test message sent by smtp-diag (run {run_id}) to check an SMTP configuration.\n"
        "If you received it, that configuration can send mail. No reply is needed.\n"
    )
    return msg.as_bytes()

