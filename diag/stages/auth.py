"""The `auth` stage: the mechanisms offered against ours, then the login itself."""

from __future__ import annotations

from typing import Any, Final

from diag.config import SmtpConfig
from diag.kinds import AuthKind
from diag.probe import Probe, Reply
from diag.profiles import go_refuses_plain, gomail_auth_pick
from diag.stages.base import Outcome, RunContext, server_provider
from diag.transport import ProbeError

# Our preference, strongest first where it matters: over TLS all three are fine; in clear CRAM-MD5 at
# least keeps the password itself off the wire.
OUR_MECHANISMS: Final = ("PLAIN", "LOGIN", "CRAM-MD5")
PLAINTEXT_PREFERENCE: Final = ("CRAM-MD5", "PLAIN", "LOGIN")


def kind_for_reply(code: int, text: str) -> AuthKind:
    enhanced = text.split(" ", 1)[0] if text[:1].isdigit() else ""
    if code == 534 or enhanced == "5.7.9":
        return AuthKind.APP_PASSWORD_REQUIRED
    if code in (530, 538) or enhanced == "5.7.11":
        return AuthKind.TLS_REQUIRED
    if enhanced == "5.7.139" or "smtpclientauthentication" in text.lower():
        return AuthKind.SMTP_AUTH_DISABLED  # the password may well be right: the tenant or mailbox says no
    if enhanced == "5.7.30":
        return AuthKind.BASIC_AUTH_RETIRED
    if code == 535 or enhanced == "5.7.8":
        return AuthKind.BAD_CREDENTIALS
    if code in (504, 502):
        return AuthKind.MECHANISM_UNSUPPORTED
    if 400 <= code < 500:
        return AuthKind.TEMPORARY
    return AuthKind.FAILED


async def check(ctx: RunContext) -> Outcome:
    config = ctx.config
    probe = ctx.probe
    assert probe is not None, "the connect stage sets the probe"
    offered = probe.auth_mechanisms
    facts: dict[str, Any] = {"auth_mechanisms_offered": offered, "tls": probe.tls_active}
    if config.anonymous:
        more = f"; the server offers AUTH {' '.join(offered)}" if offered else ""
        return Outcome.skipped(f"No credentials configured (anonymous SMTP){more}.", **facts)
    assert config.username is not None and config.password is not None
    if config.client.go_client:
        return await _as_gomail(ctx, probe, facts)
    if not offered:
        # Servers hide AUTH until STARTTLS: only then is "TLS required" a fact rather than a guess.
        if not probe.tls_active and "starttls" in probe.extensions:
            return Outcome.failed(
                "The server offers no AUTH without TLS.",
                AuthKind.TLS_REQUIRED,
                detail="AUTH is not offered before STARTTLS",
                **facts,
            )
        return Outcome.failed(
            "Credentials are configured but the server offers no AUTH.", AuthKind.NOT_OFFERED, **facts
        )
    preference = OUR_MECHANISMS if probe.tls_active else PLAINTEXT_PREFERENCE
    common = [m for m in preference if m in offered]
    if not common:
        return Outcome.failed(
            f"No common AUTH mechanism: the server offers {' '.join(offered)}.",
            AuthKind.MECHANISM_UNSUPPORTED,
            detail=f"the server offers only {' '.join(offered)}",
            **facts,
        )
    tried: list[str] = []
    facts["auth_mechanisms_tried"] = tried
    for mechanism in common:
        tried.append(mechanism)
        facts["auth_mechanism_used"] = mechanism
        answer = await _login(probe, config, mechanism, facts)
        if isinstance(answer, Outcome):
            return answer
        reply = answer
        if reply.code == 235:
            return _logged_in(ctx, mechanism, facts)
        # An advertised mechanism the server then refuses as such (504): try the next, as mail clients do.
        if kind_for_reply(reply.code, reply.text) is not AuthKind.MECHANISM_UNSUPPORTED:
            break
    return Outcome.failed(
        f"AUTH {mechanism} as {config.username} was refused: {reply}.",
        kind_for_reply(reply.code, reply.text),
        reply=reply,
        **facts,
    )


def _logged_in(ctx: RunContext, mechanism: str, facts: dict[str, Any], how: str = "") -> Outcome:
    login = f"Logged in as {ctx.config.username} with AUTH {mechanism}{how}"
    if server_provider(ctx) == "microsoft365":
        # It works today; Microsoft turns basic SMTP AUTH off by default at the end of December 2026.
        return Outcome.warning(
            f"{login} (a password) to Microsoft 365.", AuthKind.BASIC_AUTH_ENDING, detail=f"AUTH {mechanism}", **facts
        )
    return Outcome.passed(f"{login}.", **facts)


async def _login(probe: Probe, config: SmtpConfig, mechanism: str, facts: dict[str, Any]) -> Reply | Outcome:
    """One AUTH exchange: the server's reply (recorded as a fact), or the failed outcome when the session broke."""
    assert config.username is not None and config.password is not None
    try:
        reply = await probe.auth(mechanism, config.username, config.password.reveal())
    except ProbeError as error:
        return Outcome.failed(
            f"AUTH {mechanism} failed: {error.message}.", error.finding_kind, detail=error.message, **facts
        )
    facts["auth_reply"] = str(reply)
    return reply


async def _as_gomail(ctx: RunContext, probe: Probe, facts: dict[str, Any]) -> Outcome:
    """AUTH as the product's Go client does it: gomail's one pick, no fallback, and net/smtp's refusals."""
    config = ctx.config
    assert config.username is not None and config.password is not None
    mechanism = gomail_auth_pick(probe.auth_mechanisms)
    if mechanism is None:
        return Outcome.warning(
            f"The server offers no AUTH, so the product's client sends none: the username {config.username} is "
            "silently ignored and mail goes out unauthenticated.",
            AuthKind.USERNAME_IGNORED,
            **facts,
        )
    facts["auth_mechanism_used"] = mechanism
    if mechanism == "PLAIN" and go_refuses_plain(config.host, probe.tls_active):
        ctx.transcript.note("AUTH PLAIN not sent: Go's net/smtp refuses it over a plaintext connection")
        return Outcome.failed(
            "The product's client would pick AUTH PLAIN over a plaintext connection, which Go's net/smtp refuses "
            "(\"unencrypted connection\"): the password is never sent and the product fails. smtp-diag did not "
            "send it either.",
            AuthKind.UNENCRYPTED_REFUSED,
            detail="unencrypted connection",
            **facts,
        )
    reply = await _login(probe, config, mechanism, facts)
    if isinstance(reply, Outcome):
        return reply
    if reply.code == 235:
        return _logged_in(ctx, mechanism, facts, ", as the product would")
    return Outcome.failed(
        f"AUTH {mechanism} as {config.username} was refused: {reply}.",
        kind_for_reply(reply.code, reply.text),
        reply=reply,
        **facts,
    )
