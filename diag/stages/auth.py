"""The `auth` stage: the mechanisms offered against ours, then the login itself."""

from __future__ import annotations

from typing import Any, Final

from diag.kinds import AuthKind
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
        try:
            reply = await probe.auth(mechanism, config.username, config.password.reveal())
        except ProbeError as error:
            return Outcome.failed(
                f"AUTH {mechanism} failed: {error.message}.", error.finding_kind, detail=error.message, **facts
            )
        facts["auth_reply"] = str(reply)
        if reply.code == 235:
            if server_provider(ctx) == "microsoft365":
                # It works today; Microsoft turns basic SMTP AUTH off by default at the end of December 2026.
                return Outcome.warning(
                    f"Logged in as {config.username} with AUTH {mechanism} (a password) to Microsoft 365.",
                    AuthKind.BASIC_AUTH_ENDING,
                    detail=f"AUTH {mechanism}",
                    **facts,
                )
            return Outcome.passed(f"Logged in as {config.username} with AUTH {mechanism}.", **facts)
        # An advertised mechanism the server then refuses as such (504): try the next, as mail clients do.
        if kind_for_reply(reply.code, reply.text) is not AuthKind.MECHANISM_UNSUPPORTED:
            break
    return Outcome.failed(
        f"AUTH {mechanism} as {config.username} was refused: {reply}.",
        kind_for_reply(reply.code, reply.text),
        reply=reply,
        **facts,
    )
