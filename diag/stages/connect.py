"""The `connect` stage: TCP to each vetted address in order until one answers, then the 220 greeting.

For implicit TLS the handshake happens here, before the greeting: a verifying handshake first; when only
the certificate fails, the error is kept and a second, non-verifying connection reads the server (the
`tls` stage judges the certificate). When the greeting never comes, the wire tells why: a successful TLS
handshake on a fresh connection means the port wants implicit TLS; an HTTP answer means not SMTP.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from diag import certs
from diag.config import TlsMode
from diag.kinds import AnyKind, ConnectKind, TlsKind
from diag.probe import Probe, handshake_failure
from diag.server_text import decode_bytes
from diag.stages.base import Outcome, RunContext
from diag.transport import ProbeError, ProbeErrorKind, completes_tls_handshake, exchange, open_socket

T = TypeVar("T")

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
GREETING_GRACE_S: Final = 1.0  # see greeting_grace_s
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
            sock = await open_socket(address, config.port, config.client.dial_timeout_s or config.timeout_s)
            opened = await _open_or_ask(ctx, address, implicit, sock)
        except ProbeError as error:
            attempts[address] = error.kind
            if error.kind in CONNECT_KIND_ORDER:  # TCP failed (the probe notes its own failures after TCP)
                ctx.transcript.note(f"{address}:{config.port}: {error.message}")
                errors.setdefault(error.kind, error)
                continue  # try the next address, as mail clients do
            facts["connected_address"] = address
            return await _after_connect_failure(ctx, address, error, facts)
        facts["connected_address"] = address
        if isinstance(opened, Answer):  # the port answered another question before any greeting came
            attempts[address] = "greeting_timeout" if opened.waited_s >= config.timeout_s else "no_greeting"
            return _answered(ctx, address, opened, facts)
        attempts[address] = "connected"
        return _greeted(ctx, opened, facts)
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


def greeting_grace_s(timeout_s: float) -> float:
    """How long the greeting may take before the stage asks the port on other connections what it speaks.

    A real SMTP server greets within milliseconds of the connection (one write after accept; even a slow
    one doing reverse DNS first is well under a second), so a second of silence already says something.
    Servers that hold their greeting on purpose (Postfix postscreen's greet wait, Sendmail's greet_pause,
    Exim's delay) are safe: the main connection keeps waiting, silent, for the whole timeout, and only the
    extra connections speak early (which such a server logs as a pregreet on those connections alone).
    A quarter of the timeout at most, so the questions always have most of it to be answered in."""
    return min(GREETING_GRACE_S, timeout_s / 4)


async def _open_or_ask(ctx: RunContext, address: str, implicit: bool, sock: socket.socket) -> Probe | Answer:
    """The session on `sock`; when no greeting came after the grace, ask on fresh connections whether the
    port speaks TLS or another protocol, while the greeting is still awaited, and let the first answer win.

    Everything ends by one deadline, the connection's time plus the timeout: a silent port fails after one
    timeout, not one for the greeting and another for the questions. Raises ProbeError as `Probe.open`."""
    config = ctx.config
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + config.timeout_s
    opening = asyncio.ensure_future(_open(ctx, address, implicit, sock))
    asking: asyncio.Future[Answer] | None = None
    try:
        done, _ = await asyncio.wait({opening}, timeout=greeting_grace_s(config.timeout_s))
        if not done:
            asking = asyncio.ensure_future(_ask(ctx, address, implicit, deadline))
            await asyncio.wait({opening, asking}, return_when=asyncio.FIRST_COMPLETED)
            if not opening.done() and asking.result().conclusive:
                answer = asking.result()
                answer.waited_s = loop.time() - started
                ctx.transcript.note(f"no greeting after {answer.waited_s:.1f} s")
                return answer
        try:
            return await opening
        except ProbeError as error:
            if error.kind != "greeting_timeout":
                raise
            answer = await (asking if asking is not None else _ask(ctx, address, implicit, deadline))
            answer.waited_s = config.timeout_s
            return answer
    finally:
        await _cancel(opening, asking)


async def _cancel(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel what is still running and wait for it: each closes its own sockets on the way out."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def _open(ctx: RunContext, address: str, implicit: bool, sock: socket.socket) -> Probe:
    config = ctx.config
    if not implicit:
        return await Probe.open(config, ctx.transcript, address, sock=sock)
    context = await certs.client_context_async(ca_bundle=config.ca_bundle, verify=True)
    try:
        return await Probe.open(config, ctx.transcript, address, tls_context=context, sock=sock)
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
    # A greeting timeout comes back from _open_or_ask as an Answer: nothing else is left.
    return Outcome.failed(
        f"Could not read the greeting of {where}: {error.message}.", error.finding_kind, detail=error.message, **facts
    )


def _answered(ctx: RunContext, address: str, answer: Answer, facts: dict[str, Any]) -> Outcome:
    """No greeting: what the port answered on the other connections (a TLS handshake, another protocol's
    banner), or nothing at all."""
    config = ctx.config
    where = f"{address}:{config.port}"
    answer.record(ctx, address)
    waited = f"{min(answer.waited_s, config.timeout_s):.1f}".rstrip("0").rstrip(".")
    if answer.tls:
        facts["implicit_tls_detected"] = True
        return Outcome.failed(
            f"{where} sent no greeting in {waited} s but answered a TLS "
            "handshake: this port uses implicit TLS (SMTPS).",
            ConnectKind.IMPLICIT_TLS_EXPECTED,
            **facts,
        )
    if answer.banner is not None:
        facts["banner"] = answer.banner
        return Outcome.failed(
            f"{where} is not an SMTP server: it answered {answer.banner}.",
            ConnectKind.NOT_SMTP,
            detail=answer.banner,
            **facts,
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


@dataclass
class Answer:
    """What a silent port said on the stage's other connections: whether one completed a TLS handshake,
    and what it sent back to a QUIT (None: that connection could not be opened)."""

    tls: bool
    sniffed: str | None
    waited_s: float = 0.0  # how long the greeting was awaited before this answer was taken

    @property
    def banner(self) -> str | None:
        return _known_banner(self.sniffed) if self.sniffed else None

    @property
    def conclusive(self) -> bool:
        """A TLS handshake or another protocol's banner: no SMTP greeting will come on this port."""
        return self.tls or self.banner is not None

    def record(self, ctx: RunContext, address: str) -> None:
        """Into the transcript once the answer is taken, so that it reads in order after the greeting wait."""
        if self.tls:
            ctx.transcript.note(f"a second connection to {address}:{ctx.config.port} completed a TLS handshake")
        if self.sniffed is not None:
            ctx.transcript.note(f"another connection to {address}:{ctx.config.port}:")
            ctx.transcript.client("QUIT")
            if self.sniffed.strip():
                ctx.transcript.server_raw(self.sniffed.splitlines()[0])


async def _ask(ctx: RunContext, address: str, implicit: bool, deadline: float) -> Answer:
    """Does the port want implicit TLS (when we did not speak it)? Does it answer QUIT as another protocol
    would? Both at once, on fresh connections, each bounded by `deadline` (loop time)."""
    tls, sniffed = await asyncio.gather(
        _by(deadline, _answers_tls(ctx, address), False) if not implicit else _false(),
        _by(deadline, _sniff(ctx, address), None),
    )
    return Answer(tls=tls, sniffed=sniffed)


async def _by(deadline: float, coro: Coroutine[Any, Any, T], default: T) -> T:
    try:
        async with asyncio.timeout_at(deadline):
            return await coro
    except TimeoutError:
        return default


async def _false() -> bool:
    return False


async def _answers_tls(ctx: RunContext, address: str) -> bool:
    config = ctx.config
    context = await certs.client_context_async(ca_bundle=None, verify=False)
    return await completes_tls_handshake(address, config.port, config.host, context, config.timeout_s)


async def _sniff(ctx: RunContext, address: str) -> str | None:
    """Say QUIT on a silent port and read a little: an HTTP server answers with a status line. The text
    (cleaned here: the banner name quotes it), or None when the connection could not be opened."""
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
    return ctx.transcript.server_text.reply(decode_bytes(data))
