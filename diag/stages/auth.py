"""The `auth` stage: the mechanisms offered against ours, then the login itself."""

from __future__ import annotations

from typing import Final

from diag.probe import ProbeError
from diag.report import Status
from diag.stages.base import Outcome, RunContext

# Our preference, strongest first where it matters: over TLS all three are fine; in clear CRAM-MD5 at
# least keeps the password itself off the wire.
OUR_MECHANISMS: Final = ("PLAIN", "LOGIN", "CRAM-MD5")
PLAINTEXT_PREFERENCE: Final = ("CRAM-MD5", "PLAIN", "LOGIN")


def kind_for_reply(code: int, text: str) -> str:
    enhanced = text.split(" ", 1)[0] if text[:1].isdigit() else ""
    if code == 534 or enhanced == "5.7.9":
        return "app_password_required"
    if code in (530, 538) or enhanced == "5.7.11":
        return "tls_required"
    if code == 535 or enhanced in ("5.7.8", "5.7.139"):
        return "bad_credentials"
    if code in (504, 502):
        return "mechanism_unsupported"
    if 400 <= code < 500:
        return "temporary"
    return "failed"


async def check(ctx: RunContext) -> Outcome:
    config = ctx.config
    probe = ctx.probe
    assert probe is not None, "the connect stage sets the probe"
    offered = probe.auth_mechanisms
    facts: dict[str, object] = {"auth_mechanisms_offered": offered, "tls": probe.tls_active}
    if config.anonymous:
        more = f"; the server offers AUTH {' '.join(offered)}" if offered else ""
        return Outcome.skipped(f"No credentials configured (anonymous SMTP){more}.", **facts)
    assert config.username is not None and config.password is not None
    if not offered:
        # Servers hide AUTH until STARTTLS: only then is "TLS required" a fact rather than a guess.
        if not probe.tls_active and "starttls" in probe.extensions:
            return Outcome(
                Status.FAILED,
                "The server offers no AUTH without TLS.",
                facts,
                kind="tls_required",
                server_text="AUTH is not offered before STARTTLS",
            )
        return Outcome(
            Status.FAILED,
            "Credentials are configured but the server offers no AUTH.",
            facts,
            kind="not_offered",
        )
    preference = OUR_MECHANISMS if probe.tls_active else PLAINTEXT_PREFERENCE
    common = [m for m in preference if m in offered]
    if not common:
        return Outcome(
            Status.FAILED,
            f"No common AUTH mechanism: the server offers {' '.join(offered)}.",
            facts,
            kind="mechanism_unsupported",
            server_text=f"the server offers only {' '.join(offered)}",
        )
    tried: list[str] = []
    facts["auth_mechanisms_tried"] = tried
    for mechanism in common:
        tried.append(mechanism)
        facts["auth_mechanism_used"] = mechanism
        try:
            reply = await probe.auth(mechanism, config.username, config.password.reveal())
        except ProbeError as error:
            return Outcome(
                Status.FAILED,
                f"AUTH {mechanism} failed: {error.message}.",
                facts,
                kind=error.kind,
                server_text=error.message,
            )
        facts["auth_reply"] = str(reply)
        if reply.code == 235:
            return Outcome.passed(f"Logged in as {config.username} with AUTH {mechanism}.", **facts)
        # An advertised mechanism the server then refuses as such (504): try the next, as mail clients do.
        if kind_for_reply(reply.code, reply.text) != "mechanism_unsupported":
            break
    kind = kind_for_reply(reply.code, reply.text)
    return Outcome(
        Status.FAILED,
        f"AUTH {mechanism} as {config.username} was refused: {reply}.",
        facts,
        kind=kind,
        reply_code=reply.code,
        server_text=reply.text,
    )
