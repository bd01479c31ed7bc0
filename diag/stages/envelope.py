"""The envelope stages: MAIL FROM with the configured From, RCPT TO, and optionally a real message.

MAIL FROM always runs: "connection OK" tools that stop before it pass configurations that fail later on
the sender. RCPT TO always runs too, with the From address itself when no test recipient is set: Postfix
checks senders and clients only there. Without a test message nothing is ever sent: no DATA follows, and
the run's QUIT ends the transaction (RFC 5321 4.1.1.10), so no RSET is said before it (a round trip
nothing reads; issue 13).
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Final

from diag.kinds import Kind, MailFromKind, RcptToKind, SendKind
from diag.probe import Reply
from diag.report import Status
from diag.stages.base import Outcome, RunContext, server_provider
from diag.transport import ProbeError

TEST_SUBJECT: Final = "smtp-diag test message"


def _enhanced(text: str) -> str:
    first = text.split(" ", 1)[0]
    return first if first[:1].isdigit() and first.count(".") == 2 else ""


@dataclass(frozen=True, slots=True)
class Client:
    """What the reading of a refusal needs to know about this session."""

    anonymous: bool  # no credentials configured
    auth_offered: bool  # the server advertises AUTH

    @classmethod
    def of(cls, ctx: RunContext) -> Client:
        return cls(ctx.config.anonymous, bool(ctx.probe and ctx.probe.auth_mechanisms))


# Postfix's words, which Debian's and most sites' configurations keep; Exim's "relay not permitted".
NOT_LOGGED_IN: Final = ("not logged in", "authentication required", "must be authenticated", "must authenticate")
SENDER_WORDS: Final = ("sender address rejected", "not owned by", "send as this sender", "sendasdenied")


def sender_or_client_kind(reply: Reply, client: Client) -> MailFromKind | None:
    """A refusal of the sender or of this client, at whichever step the server says it: Postfix's default
    smtpd_delay_reject=yes says "Sender address rejected" and "Client host rejected" only at RCPT TO. The
    reply's words decide before its enhanced code: Postfix gives all of them 5.7.1."""
    text = reply.text.lower()
    enhanced = _enhanced(reply.text)
    if (reply.code in (530, 538) and "starttls" in text) or enhanced == "5.7.11":
        return MailFromKind.TLS_REQUIRED
    if reply.code == 530 or any(w in text for w in NOT_LOGGED_IN):
        return MailFromKind.AUTH_REQUIRED
    if enhanced in ("5.7.0", "5.7.57") and "auth" in text:
        return MailFromKind.AUTH_REQUIRED
    # Postfix's bare `reject` after permit_sasl_authenticated: "Access denied" to a client that did not log
    # in where it could have (the usual submission port) wants credentials, not another address.
    if "access denied" in text and client.anonymous and client.auth_offered and reply.code >= 500:
        return MailFromKind.AUTH_REQUIRED
    if "client host rejected" in text and reply.code >= 500:
        return MailFromKind.CLIENT_REJECTED
    if any(w in text for w in SENDER_WORDS) and reply.code >= 500:
        return MailFromKind.SENDER_REJECTED
    return None


def mail_from_kind(reply: Reply, client: Client) -> MailFromKind:
    known = sender_or_client_kind(reply, client)
    if known is not None:
        return known
    enhanced = _enhanced(reply.text)
    if reply.code in (501, 555) or enhanced == "5.5.4" or enhanced == "5.1.7":
        return MailFromKind.SYNTAX
    if 400 <= reply.code < 500:
        return MailFromKind.TEMPORARY
    if reply.code in (550, 553, 554, 551) or enhanced.startswith("5.7") or enhanced.startswith("5.1"):
        return MailFromKind.SENDER_REJECTED
    return MailFromKind.REJECTED


def rcpt_kind(reply: Reply, client: Client) -> MailFromKind | RcptToKind:
    known = sender_or_client_kind(reply, client)
    if known is not None:
        return known
    text = reply.text.lower()
    enhanced = _enhanced(reply.text)
    if 400 <= reply.code < 500:
        return RcptToKind.TEMPORARY
    if "relay" in text or enhanced == "5.7.1":
        return RcptToKind.RELAY_DENIED
    if enhanced in ("5.1.1", "5.1.10") or "unknown" in text or "does not exist" in text or "no such" in text:
        return RcptToKind.UNKNOWN_RECIPIENT
    return RcptToKind.REJECTED


# What a sender-or-client refusal said at RCPT TO is about, for the stage's summary.
AT_RCPT: Final[dict[MailFromKind, str]] = {
    MailFromKind.AUTH_REQUIRED: "this client until it logs in (the sender was {from_email})",
    MailFromKind.TLS_REQUIRED: "this client until it uses TLS",
    MailFromKind.CLIENT_REJECTED: "this client's address (the sender was {from_email})",
}


@dataclass(frozen=True, slots=True)
class AddressCommand:
    """MAIL FROM or RCPT TO: the command, the replies that accept, what a refusal means, and the words."""

    verb: str
    accepted: tuple[int, ...]
    kind_of: Callable[[Reply, Client], Kind]
    role: str  # "sender" / "recipient"
    fact: str  # the fact that names the address


MAIL_FROM: Final = AddressCommand("MAIL FROM", (250,), mail_from_kind, "sender", "from_email")
RCPT_TO: Final = AddressCommand("RCPT TO", (250, 251), rcpt_kind, "recipient", "recipient")


async def check_mail_from(ctx: RunContext) -> Outcome:
    config = ctx.config
    # RCPT TO always follows, with the From as recipient when no test recipient is set.
    outcome = await _address_check(ctx, MAIL_FROM, config.from_email)
    if outcome.status is Status.PASSED and _send_as_unproven(ctx):
        return Outcome.warning(
            f"The server accepts {config.from_email} as sender; Microsoft 365 decides whether "
            f"{config.username} may send as it only after the message (DATA).",
            MailFromKind.SEND_AS_UNPROVEN,
            detail=f"From {config.from_email}, login {config.username}",
            **outcome.facts,
        )
    return outcome


def _send_as_unproven(ctx: RunContext) -> bool:
    """Microsoft 365, a From that is not the login, and no test message that would prove it."""
    config = ctx.config
    if config.username is None or config.send_test_message:
        return False
    if config.username.strip().lower() == config.from_email.strip().lower():
        return False
    return server_provider(ctx) == "microsoft365"


async def check_rcpt_to(ctx: RunContext) -> Outcome:
    config = ctx.config
    if config.recipient:
        return await _address_check(ctx, RCPT_TO, config.recipient)
    return await _probe_envelope(ctx)


# Refusals of the From as a recipient that say nothing against the sender or the client: servers check
# the client and the sender before the recipient's own existence, so these leave the envelope unproven.
INCONCLUSIVE: Final = frozenset({RcptToKind.UNKNOWN_RECIPIENT, RcptToKind.TEMPORARY, RcptToKind.REJECTED})


async def _probe_envelope(ctx: RunContext) -> Outcome:
    """No test recipient: RCPT TO the From address itself, never DATA (the run's QUIT ends the transaction).
    Servers that check senders and clients only at RCPT TO (Postfix by default) say here what MAIL FROM did
    not; nothing is sent."""
    address = ctx.config.from_email
    probed = {"recipient_probed": address, "probe": "RCPT TO the From address; no DATA"}
    outcome = await _address_check(ctx, RCPT_TO, address)
    outcome.facts.update(probed)
    if outcome.status is Status.PASSED:
        outcome.summary = (
            f"No test recipient configured: RCPT TO the From address {address} was accepted, so the server "
            "takes this sender from this client (nothing was sent)."
        )
        return outcome
    if outcome.kind in INCONCLUSIVE:
        outcome.status = Status.WARNING
    asked = f"No test recipient configured, so RCPT TO the From address {address} was asked."
    outcome.summary = f"{asked} {outcome.summary}"
    return outcome


async def _address_check(ctx: RunContext, command: AddressCommand, address: str) -> Outcome:
    refused = f"The server refused the {command.role} {address}"
    client = Client.of(ctx)
    line = f"{command.verb}:<{address}>"
    result = await _step(ctx, command.verb, line, command.accepted, lambda r: command.kind_of(r, client), refused)
    if isinstance(result, Outcome) and command is RCPT_TO and isinstance(result.kind, MailFromKind):
        # Said at RCPT TO, about the sender or this client: the summary says so, not "the recipient".
        refused = AT_RCPT.get(result.kind, "the sender {from_email}").format(from_email=ctx.config.from_email)
        result.summary = f"At RCPT TO the server refused {refused}: {result.facts.get('rcpt_to_reply', '')}."
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

