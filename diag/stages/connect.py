"""The `connect` stage: TCP to each vetted address in order until one answers, then the 220 greeting.

For implicit TLS the handshake happens here, before the greeting: a verifying handshake first; when only
the certificate fails, the error is kept and a second, non-verifying connection reads the server (the
`tls` stage judges the certificate). When the greeting never comes, the wire tells why: a successful TLS
handshake on a fresh connection means the port wants implicit TLS; an HTTP answer means not SMTP.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from typing import Any, Final

from diag import certs
from diag.config import TlsMode
from diag.kinds import AnyKind, ConnectKind, TlsKind
from diag.probe import Probe, handshake_failure
from diag.server_text import decode_bytes
from diag.stages.base import Outcome, RunContext
from diag.transport import ProbeError, ProbeErrorKind, completes_tls_handshake, exchange

# The TCP failures, ordered by how much each tells a person: a timeout (firewall) is more telling than a
# refusal elsewhere; a block by this machine's own policy is the same for every address.
CONNECT_KIND_ORDER: Final[tuple[ProbeErrorKind, ...]] = (
    "timeout", "blocked", "refused", "unreachable", "connect_error"
)
TCP_KINDS: Final[dict[ProbeErrorKind, ConnectKind]] = {
    "timeout": ConnectKind.TIMEOUT,  # a TCP connect timeout is a firewall's silence, not a stalled server
    "blocked": ConnectKind.BLOCKED,
    "refused": ConnectKind.REFUSED,
    "unreachable": ConnectKind.UNREACHABLE,
    "connect_error": ConnectKind.UNREACHABLE,  # the likeliest reading; the finding quotes the kernel's words
}
SNIFF_LIMIT: Final = 512
SNIFF_TIMEOUT_S: Final = 2.0
NOT_SMTP_BANNERS: Final = (
    (re.compile(r"SSH-\d\.\d"), "an SSH banner"),
    (re.compile(r"HTTP/\d"), "an HTTP response"),
    (re.compile(r"(^|: )\* OK", re.I), "an IMAP greeting"),
    (re.compile(r"(^|: )\+OK"), "a POP3 greeting"),
    # A web server answering our QUIT as HTTP/0.9 sends an error page without a status line.
    (re.compile(r"<!DOCTYPE html|<html", re.I), "an HTML page (a web server)"),
)


async def check(ctx: RunContext) -> Outcome:
    config = ctx.config
    implicit = config.effective_tls_mode is TlsMode.IMPLICIT
    attempts: dict[str, str] = {}
    facts: dict[str, Any] = {"attempts": attempts, "implicit_tls": implicit}
    if config.client.dial_timeout_s is not None:
        facts["dial_timeout_s"] = config.client.dial_timeout_s  # the product's, not our per-step timeout
    errors: dict[ProbeErrorKind, ProbeError] = {}
    for address in ctx.addresses:
        try:
            probe = await _open(ctx, address, implicit)
        except ProbeError as error:
            attempts[address] = error.kind
            if error.kind in CONNECT_KIND_ORDER:  # TCP failed (the probe notes its own failures after TCP)
                ctx.transcript.note(f"{address}:{config.port}: {error.message}")
                errors.setdefault(error.kind, error)
                continue  # try the next address, as mail clients do
            facts["connected_address"] = address
            return await _after_connect_failure(ctx, address, error, facts)
        attempts[address] = "connected"
        facts["connected_address"] = address
        return _greeted(ctx, probe, facts)
    return _not_connected(ctx, errors, facts)


def _not_connected(ctx: RunContext, errors: dict[ProbeErrorKind, ProbeError], facts: dict[str, Any]) -> Outcome:
    """No address answered: the most telling failure, said once, with the host as the user typed it."""
    config = ctx.config
    where = f"{config.host}:{config.port}"
    tried = f"tried {len(facts['attempts'])} address(es)"
    kind = next((k for k in CONNECT_KIND_ORDER if k in errors), None)
    if kind is None:  # no address to try: the dns stage passes only with at least one
        return Outcome.failed(f"No address of {where} to connect to.", ConnectKind.UNREACHABLE, **facts)
    error = errors[kind]
    summaries: dict[ProbeErrorKind, str] = {
        "timeout": f"No answer from {where} within {config.client.dial_timeout_s or config.timeout_s:g} s ({tried}).",
        "refused": f"{where} refused the connection ({tried}).",
        "blocked": f"The connection to {where} was blocked on this machine: {error.message} ({tried}).",
        "unreachable": f"No route to {where}.",
    }
    summary = summaries.get(kind, f"Could not connect to {where}: {error.message} ({tried}).")
    return Outcome.failed(summary, TCP_KINDS[kind], detail=error.message, **facts)


async def _open(ctx: RunContext, address: str, implicit: bool) -> Probe:
    config = ctx.config
    if not implicit:
        return await Probe.open(config, ctx.transcript, address)
    context = await certs.client_context_async(ca_bundle=config.ca_bundle, verify=True)
    try:
        return await Probe.open(config, ctx.transcript, address, tls_context=context)
    except ProbeError as error:
        if error.kind != "tls_verify":
            raise
        ctx.transcript.note("reconnecting without verification to describe the server's certificate")
        unverified = await certs.client_context_async(ca_bundle=None, verify=False)
        probe = await Probe.open(config, ctx.transcript, address, tls_context=unverified)
        assert isinstance(error.cause, ssl.SSLCertVerificationError)
        probe.verify_error = error.cause
        return probe


def _greeted(ctx: RunContext, probe: Probe, facts: dict[str, Any]) -> Outcome:
    ctx.probe = probe
    greeting = probe.greeting
    facts["greeting"] = str(greeting)
    facts["greeting_code"] = greeting.code
    if probe.implicit_tls:
        facts["tls"] = True
    where = f"{probe.address}:{ctx.config.port}"
    if greeting.code != 220:
        return Outcome.failed(
            f"{where} greeted with {greeting.code}: the server refuses this session.",
            ConnectKind.GREETING_REJECTED,
            reply=greeting,
            **facts,
        )
    tls = " over implicit TLS" if probe.implicit_tls else ""
    return Outcome.passed(f"Connected to {where}{tls}; greeting: {str(greeting)[:120]}", **facts)


async def _after_connect_failure(
    ctx: RunContext, address: str, error: ProbeError, facts: dict[str, Any]
) -> Outcome:
    """TCP worked but the greeting (or implicit TLS handshake) did not: find out what the port speaks."""
    config = ctx.config
    where = f"{address}:{config.port}"
    if error.kind == "tls_handshake":
        kind, detail = handshake_failure(error)
        if kind is TlsKind.NOT_TLS:
            return Outcome.failed(
                f"{where} answered the TLS handshake in plaintext: it speaks plain SMTP "
                "(STARTTLS), not implicit TLS.",
                kind,
                detail=detail,
                **facts,
            )
        return Outcome.failed(f"TLS handshake with {where} failed: {detail}.", kind, detail=detail, **facts)
    if error.kind == "protocol_error":
        banner = _known_banner(error.message)
        if banner is None:
            return Outcome.failed(
                f"{where} sent something that is not an SMTP greeting ({' '.join(error.message.split())[:200]}).",
                AnyKind.PROTOCOL_ERROR,
                detail=error.message,
                **facts,
            )
        facts["banner"] = banner
        return Outcome.failed(
            f"{where} is not an SMTP server: it sent {banner}.", ConnectKind.NOT_SMTP, detail=banner, **facts
        )
    if error.kind == "disconnected":
        return Outcome.failed(
            f"{where} closed the connection before greeting.", ConnectKind.CLOSED_BY_SERVER, **facts
        )
    # timeout: silence. Does the port want implicit TLS? Does it speak HTTP? Both questions at once, on
    # fresh connections, so a silent port costs two timeouts, not three.
    wants_tls = config.effective_tls_mode is not TlsMode.IMPLICIT
    tls_task = asyncio.ensure_future(_answers_tls(ctx, address) if wants_tls else _false())
    try:
        answer = await _sniff(ctx, address)
        answers_tls = await tls_task
    finally:
        tls_task.cancel()
    if answers_tls:
        facts["implicit_tls_detected"] = True
        return Outcome.failed(
            f"{where} sent no greeting in {config.timeout_s:g} s but answered a TLS "
            "handshake: this port uses implicit TLS (SMTPS).",
            ConnectKind.IMPLICIT_TLS_EXPECTED,
            **facts,
        )
    if answer is not None:
        facts["banner"] = answer
        return Outcome.failed(
            f"{where} is not an SMTP server: it answered {answer}.", ConnectKind.NOT_SMTP, detail=answer, **facts
        )
    return Outcome.failed(
        f"{where} accepted the connection but sent no greeting in {config.timeout_s:g} s.",
        ConnectKind.NO_GREETING,
        **facts,
    )


def _known_banner(text: str) -> str | None:
    """Name the protocol of a non-SMTP banner (SSH, HTTP, IMAP, POP3) found in a reply or error text."""
    for pattern, name in NOT_SMTP_BANNERS:
        match = pattern.search(text)
        if match:
            return f"{name} ({text[match.start() : match.start() + 80]!r})"
    return None


async def _false() -> bool:
    return False


async def _answers_tls(ctx: RunContext, address: str) -> bool:
    config = ctx.config
    context = await certs.client_context_async(ca_bundle=None, verify=False)
    answered = await completes_tls_handshake(address, config.port, config.host, context, config.timeout_s)
    if answered:
        ctx.transcript.note(f"a second connection to {address}:{config.port} completed a TLS handshake")
    return answered


async def _sniff(ctx: RunContext, address: str) -> str | None:
    """Say QUIT on a silent port and read a little: an HTTP server answers with a status line."""
    config = ctx.config
    data = await exchange(
        address,
        config.port,
        b"QUIT\r\n\r\n",
        limit=SNIFF_LIMIT,
        connect_timeout_s=config.timeout_s,
        read_timeout_s=min(SNIFF_TIMEOUT_S, config.timeout_s),
    )
    if data is None:
        return None
    ctx.transcript.client("QUIT")
    # The transcript would clean it too; the banner name quotes it, so it is cleaned before anything reads it.
    text = ctx.transcript.server_text.reply(decode_bytes(data))
    if text.strip():
        ctx.transcript.server_raw(text.splitlines()[0])
    return _known_banner(text)
