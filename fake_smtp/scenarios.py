"""Named scenarios: a real provider's or server's failure, reply texts included, on one word.

A scenario is server options (auth, TLS), fault rules and envelope policies put together. Some take one
argument after a colon: `slow-greeting:2` (seconds), `greylisting:1` (seconds before a retry passes),
`rate-limited:3/60` (messages per window in seconds), `relay-denied:example.com,example.org` (local
domains), `ses-unverified-sender:ok@example.com` (verified identities).

Reply texts are the providers' own (sources in docs/fake-smtp.md); `{mail_from}`, `{rcpt}`,
`{rcpt_domain}` and `{login}` are filled from the session.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fake_smtp.faults import Fault
from fake_smtp.policies import (
    Greylist,
    Policy,
    RateLimit,
    RelayDenied,
    SendAsAtData,
    SenderMustBeLogin,
    VerifiedSendersOnly,
)

GMAIL_534_SECOND_FACTOR = (
    "534-5.7.9 Application-specific password required. Learn more at\r\n"
    "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor fake-smtp - gsmtp"
)
GMAIL_BAD_CREDENTIALS = (
    "535-5.7.8 Username and Password not accepted. Learn more at\r\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials fake-smtp - gsmtp"
)
M365_AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
    "Visit https://aka.ms/smtp_auth_disabled for more information."
)
M365_BASIC_RETIRED = "550 5.7.30 Basic authentication is not supported for Client Submission."
M365_SEND_AS_DENIED = "554 5.2.252 SendAsDenied; {login} not allowed to send as {mail_from}"
SES_NOT_VERIFIED = (
    "554 Message rejected: Email address is not verified. The following identities failed the check in "
    "region US-EAST-1: {mail_from}"
)
TLS_NOT_AVAILABLE = "454 4.7.0 TLS not available due to local problem"
GREYLISTED = (
    "451 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, see "
    "http://postgrey.schweikert.ch/help/{rcpt_domain}.html"
)
RATE_LIMITED = "421 4.7.0 Try again later, closing connection."
RELAY_DENIED = "554 5.7.1 <{rcpt}>: Relay access denied"
SENDER_NOT_OWNED = "553 5.7.1 <{mail_from}>: Sender address rejected: not owned by user {login}"

DEFAULT_SLOW_GREETING_S = 10.0
DEFAULT_GREYLIST_S = 60.0
DEFAULT_RATE = (3, 60.0)


@dataclass(frozen=True)
class Setup:
    """What a scenario asks of the server: FakeSMTP options, faults, policies and AUTH replies."""

    options: dict[str, Any] = field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    policies: tuple[Policy, ...] = ()
    auth_failure_reply: str | None = None  # instead of 535 5.7.8 for wrong credentials
    basic_auth_refusal: str | None = None  # for every PLAIN/LOGIN/CRAM-MD5, right credentials or not


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    replies: tuple[str, ...]  # what a client sees, for --list-scenarios and the docs
    source: str
    build: Callable[[str | None], Setup]
    argument: str = ""  # what the optional `:ARG` means; empty: takes none


def _no_argument(name: str, argument: str | None) -> None:
    if argument is not None:
        raise ValueError(f"scenario {name!r} takes no argument")


def _seconds(name: str, argument: str | None, default: float) -> float:
    if argument is None:
        return default
    try:
        seconds = float(argument)
    except ValueError:
        raise ValueError(f"scenario {name!r}: expected seconds after ':', got {argument!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"scenario {name!r}: seconds must be a finite number >= 0, got {argument!r}")
    return seconds


def _names(name: str, argument: str | None) -> tuple[str, ...]:
    if argument is None:
        return ()
    names = tuple(part.strip() for part in argument.split(",") if part.strip())
    if not names or any(" " in part or len(part) > 254 for part in names):
        raise ValueError(f"scenario {name!r}: expected comma-separated names, got {argument!r}")
    return names


def _rate(name: str, argument: str | None) -> tuple[int, float]:
    if argument is None:
        return DEFAULT_RATE
    count_text, _, window_text = argument.partition("/")
    if not count_text.isdigit():
        raise ValueError(f"scenario {name!r}: expected N or N/SECONDS, got {argument!r}")
    window = _seconds(name, window_text, DEFAULT_RATE[1]) if window_text else DEFAULT_RATE[1]
    if window <= 0:
        raise ValueError(f"scenario {name!r}: the window must be > 0 seconds")
    return int(count_text), window


SUBMISSION = {"auth": "required", "tls": "starttls"}
MICROSOFT = {**SUBMISSION, "xoauth2_style": "microsoft"}  # a bad XOAUTH2 token gets 535 5.7.3


def _fixed(setup: Setup) -> Callable[[str | None], Setup]:
    return lambda argument: setup


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "gmail-app-password",
            "Gmail with 2-Step Verification: any password but the app password (the configured one) is refused",
            (GMAIL_534_SECOND_FACTOR,), "PHPMailer/PHPMailer#1708; mageplaza/magento-2-smtp#181",
            _fixed(Setup(dict(SUBMISSION), auth_failure_reply=GMAIL_534_SECOND_FACTOR)),
        ),
        Scenario(
            "gmail-bad-password",
            "Gmail: wrong username or password, in Gmail's multi-line words",
            (GMAIL_BAD_CREDENTIALS,), "akka/akka-core#30200; JanssenProject/jans#7537",
            _fixed(Setup(dict(SUBMISSION), auth_failure_reply=GMAIL_BAD_CREDENTIALS)),
        ),
        Scenario(
            "m365-basic-auth-disabled",
            "Microsoft 365: SMTP AUTH with a password is disabled for the tenant (XOAUTH2 still works)",
            (M365_AUTH_DISABLED,), "nodemailer/nodemailer#1484",
            _fixed(Setup(dict(MICROSOFT), basic_auth_refusal=M365_AUTH_DISABLED)),
        ),
        Scenario(
            "m365-basic-auth-retired",
            "Microsoft 365 after Basic auth is retired for Client Submission (XOAUTH2 still works)",
            (M365_BASIC_RETIRED,), "Microsoft Exchange team blog, ba-p/4114750",
            _fixed(Setup(dict(MICROSOFT), basic_auth_refusal=M365_BASIC_RETIRED)),
        ),
        Scenario(
            "m365-send-as-denied",
            "Microsoft 365: MAIL and RCPT pass, the end of DATA refuses a From other than the login",
            (M365_SEND_AS_DENIED,), "gophish/gophish#2900; MicrosoftDocs/OfficeDocs-Support#1187",
            _fixed(Setup(dict(MICROSOFT), policies=(SendAsAtData(M365_SEND_AS_DENIED),))),
        ),
        Scenario(
            "ses-unverified-sender",
            "Amazon SES: the end of DATA refuses a sender that is not a verified identity",
            (SES_NOT_VERIFIED,), "GoogleCloudPlatform/cloud-build-notifiers#87; aws/amazon-ecs-agent#533",
            lambda arg: Setup(
                dict(SUBMISSION),
                policies=(VerifiedSendersOnly(SES_NOT_VERIFIED, _names("ses-unverified-sender", arg)),),
            ),
            argument="verified identities (addresses or domains), comma-separated; default none",
        ),
        Scenario(
            "starttls-broken",
            "STARTTLS is advertised but the server's TLS is broken",
            (TLS_NOT_AVAILABLE,), "grafana/grafana#24563",
            _fixed(Setup({"tls": "starttls"}, faults=(
                Fault("starttls", "reply", code=454, text=TLS_NOT_AVAILABLE[4:]),
            ))),
        ),
        Scenario(
            "auth-after-starttls-only",
            "AUTH is advertised only after STARTTLS; AUTH or MAIL before it is refused",
            ("530 5.7.0 Must issue a STARTTLS command first",), "jetmore/swaks#15 (Amazon SES)",
            _fixed(Setup({**SUBMISSION, "require_starttls": True})),
        ),
        Scenario(
            "implicit-tls-only",
            "only implicit TLS (SMTPS, as on port 465): a plaintext or STARTTLS client never sees a greeting",
            ("(no greeting until a TLS ClientHello)",), "sentry self-hosted#2745; mastodon/mastodon#14290",
            _fixed(Setup({"tls": "implicit-only"})),
        ),
        Scenario(
            "slow-greeting",
            "the greeting comes only after N seconds (a tarpit, or an overloaded server)",
            ("220 ... after N s",), "grafana/grafana#12314",
            lambda arg: Setup(faults=(
                Fault("greeting", "delay", seconds=_seconds("slow-greeting", arg, DEFAULT_SLOW_GREETING_S)),
            )),
            argument=f"seconds; default {DEFAULT_SLOW_GREETING_S:g}",
        ),
        Scenario(
            "greylisting",
            "the first try of a (client, sender, recipient) triplet is deferred; a retry after N s passes",
            (GREYLISTED,), "Postgrey's default reply text (Postfix check_policy_service)",
            lambda arg: Setup(policies=(
                Greylist(GREYLISTED, _seconds("greylisting", arg, DEFAULT_GREYLIST_S)),
            )),
            argument=f"seconds before a retry passes; default {DEFAULT_GREYLIST_S:g}",
        ),
        Scenario(
            "rate-limited",
            "after N accepted messages within the window, MAIL gets 421 and the connection closes",
            (RATE_LIMITED,), "Gmail's 421 4.7.0 wording; Mailpit#676 (a real limiter, not a random 421)",
            lambda arg: Setup(policies=(RateLimit(RATE_LIMITED, *_rate("rate-limited", arg)),)),
            argument=f"N or N/SECONDS messages per window; default {DEFAULT_RATE[0]}/{DEFAULT_RATE[1]:g}",
        ),
        Scenario(
            "relay-denied",
            "recipients outside the local domains are refused unless the session logged in",
            (RELAY_DENIED,), "Postfix reject_unauth_destination",
            lambda arg: Setup(policies=(RelayDenied(RELAY_DENIED, _names("relay-denied", arg) or ("localhost",)),)),
            argument="local domains, comma-separated; default localhost",
        ),
        Scenario(
            "sender-not-owned",
            "MAIL FROM must be the address that logged in",
            (SENDER_NOT_OWNED,), "jenkinsci/mailer-plugin#23; Postfix reject_sender_login_mismatch",
            _fixed(Setup(dict(SUBMISSION), policies=(SenderMustBeLogin(SENDER_NOT_OWNED),))),
        ),
    )
}


def split_name(spec: str) -> tuple[str, str | None]:
    name, colon, argument = spec.strip().partition(":")
    return name, (argument if colon else None)


def resolve(spec: str) -> tuple[Scenario, Setup]:
    """`NAME` or `NAME:ARG` -> the scenario and what it sets up; ValueError naming the problem."""
    name, argument = split_name(spec)
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(SCENARIOS)}")
    if not scenario.argument:
        _no_argument(name, argument)
    return scenario, scenario.build(argument)


def listing() -> str:
    """`fake-smtp --list-scenarios`: one block per scenario, its argument and the replies a client sees."""
    blocks = []
    for scenario in SCENARIOS.values():
        lines = [f"{scenario.name}: {scenario.summary}"]
        if scenario.argument:
            lines.append(f"    argument (:ARG): {scenario.argument}")
        lines.extend(f"    reply: {line}" for reply in scenario.replies for line in reply.split("\r\n"))
        lines.append(f"    source: {scenario.source}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
