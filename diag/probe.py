"""The SMTP conversation driver: aiosmtplib on a socket we opened to a vetted address.

The socket comes from diag.transport, which also maps every library and socket exception into
`ProbeError(kind)`, once (its docstring draws the tree); SMTP replies (any code) come back as `Reply`
values, never as exceptions. Every line is recorded in the transcript as it is sent or received (AUTH
masked by the transcript). What the server said (reply texts, EHLO keywords, error messages quoting its
bytes) is cleaned here by the run's `ServerText` (decoded, no control characters, bounded, the password
masked): no stage or sink ever sees it raw.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import aiosmtplib
from aiosmtplib import SMTPResponse

from diag import certs
from diag.config import DEFAULT_HELO_NAME, SmtpConfig
from diag.kinds import TlsKind
from diag.server_text import ServerText
from diag.transcript import Transcript
from diag.transport import ProbeError, map_exception, open_socket


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def valid(self) -> bool:
        """SMTP reply codes start with 2 to 5 (RFC 5321 4.2.1); anything else is a broken peer."""
        return 200 <= self.code < 600

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.text.split())}"


def cleaned(error: ProbeError, text: ServerText) -> ProbeError:
    """The error with its message made safe: messages quote the server's bytes (an invalid reply line,
    a library error), and they become summaries, findings and notes."""
    error.message = text.line(error.message)
    error.args = (error.message,)
    return error


def handshake_failure(error: ProbeError) -> tuple[TlsKind, str]:
    """(kind, detail) of a failed TLS handshake, for the connect stage (implicit TLS) and the tls stage
    (STARTTLS) alike: "not_tls" when the peer answered in plaintext, else "handshake_failed"; the detail is
    the reason without our own "TLS handshake failed: " prefix, which the finding says already."""
    kind = certs.handshake_kind(error.cause) if error.cause is not None else TlsKind.HANDSHAKE_FAILED
    return kind, error.message.removeprefix("TLS handshake failed: ")


def helo_name(config: SmtpConfig) -> str:
    return config.helo_name or DEFAULT_HELO_NAME


class Probe:
    """One live SMTP session with one address."""

    def __init__(self, smtp: aiosmtplib.SMTP, address: str, transcript: Transcript, greeting: Reply) -> None:
        self.smtp = smtp
        self.address = address
        self.transcript = transcript
        self.text: ServerText = transcript.server_text
        self.greeting = greeting
        self.implicit_tls = smtp.use_tls
        # Set when a verifying handshake failed and this session continues unverified to describe the server.
        self.verify_error: ssl.SSLCertVerificationError | None = None
        # aiosmtplib forgets its transport when a command times out, after a graceful close() that waits
        # for unsent data (a stalled DATA) or a TLS close_notify: close() must still abort every one.
        self._transports: list[asyncio.BaseTransport] = [t for t in (smtp.transport,) if t is not None]

    @classmethod
    async def open(
        cls,
        config: SmtpConfig,
        transcript: Transcript,
        address: str,
        *,
        tls_context: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
    ) -> Probe:
        """Connect (TCP, then TLS for implicit TLS) and read the greeting, whatever its code. `sock`, when
        given, is a connection to `address` already open (the connect stage times the greeting from it);
        the probe owns it from here and closes it on failure."""
        if sock is None:
            # A Go profile dials as gomail does (10 s), whatever our per-step timeout.
            sock = await open_socket(address, config.port, config.client.dial_timeout_s or config.timeout_s)
        transcript.note(f"connected to {address}:{config.port}")
        try:
            smtp = aiosmtplib.SMTP(
                sock=sock,
                hostname=config.host,
                use_tls=tls_context is not None,
                start_tls=False,
                tls_context=tls_context,
                timeout=config.timeout_s,
                local_hostname=helo_name(config),
            )
        except BaseException:
            sock.close()
            raise
        try:
            try:
                response = await smtp.connect()
                greeting = Reply(response.code, transcript.server_text.reply(response.message))
            except aiosmtplib.SMTPConnectResponseError as exc:
                greeting = Reply(exc.code, transcript.server_text.reply(exc.message))
            if not greeting.valid:
                raise ProbeError("protocol_error", f"invalid greeting: {greeting}")
        except BaseException as exc:
            smtp.close()
            sock.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            error = cleaned(map_exception(exc, "the greeting"), transcript.server_text)
            if error.kind == "timeout":  # TCP is up: silence is not a connect timeout, and tells a story
                error = ProbeError("greeting_timeout", f"no greeting within {config.timeout_s:g} s", cause=exc)
            transcript.note(error.message)
            raise error from None
        probe = cls(smtp, address, transcript, greeting)
        if tls_context is not None:
            probe._note_tls()
        transcript.server(greeting.code, greeting.text)
        return probe

    @property
    def tls_active(self) -> bool:
        return self.smtp.get_transport_info("sslcontext") is not None

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self.smtp.get_transport_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    @property
    def extensions(self) -> dict[str, str]:
        """EHLO keywords and their parameters, as aiosmtplib parsed them from the server's words."""
        return {self.text.line(k): self.text.line(v) for k, v in self.smtp.esmtp_extensions.items()}

    @property
    def auth_mechanisms(self) -> list[str]:
        return [self.text.line(m).upper() for m in self.smtp.server_auth_methods]

    def capability_facts(self, prefix: str = "") -> dict[str, Any]:
        """The EHLO capabilities as flat facts; `prefix` tells the EHLO before STARTTLS from the one after."""
        ext = self.extensions
        facts: dict[str, Any] = {
            f"{prefix}capabilities": sorted(k.upper() for k in ext),
            f"{prefix}starttls_offered": "starttls" in ext,
            f"{prefix}auth_mechanisms": self.auth_mechanisms,
        }
        if ext.get("size", "").strip().isdigit():
            facts[f"{prefix}size_limit"] = int(ext["size"].strip())
        return facts

    async def ehlo(self) -> Reply:
        return await self._call(f"EHLO {helo_name_of(self.smtp)}", self.smtp.ehlo())

    async def helo(self) -> Reply:
        return await self._call(f"HELO {helo_name_of(self.smtp)}", self.smtp.helo())

    async def starttls(self, context: ssl.SSLContext) -> Reply:
        reply = await self._call("STARTTLS", self.smtp.starttls(tls_context=context))
        if reply.code == 220:
            self._note_tls()
        return reply

    async def auth(self, mechanism: str, username: str, password: str) -> Reply:
        methods = {
            "PLAIN": self.smtp.auth_plain,
            "LOGIN": self.smtp.auth_login,
            "CRAM-MD5": self.smtp.auth_crammd5,
        }
        # The transcript masks everything after the mechanism; aiosmtplib sends the payload itself.
        return await self._call(f"AUTH {mechanism} <credentials>", methods[mechanism](username, password))

    async def command(self, line: str) -> Reply:
        """Any single-line command; the reply whatever its code."""
        return await self._call(line, self.smtp.execute_command(line.encode("utf-8")))

    async def data(self, message: bytes) -> Reply:
        self.transcript.note(f"sending a {len(message)}-byte test message")
        return await self._call("DATA", self.smtp.data(message))

    async def close(self, *, polite: bool = True) -> None:
        """QUIT when `polite`, then close whatever is left, and the socket with it, now.

        QUIT is sent, not waited for: its reply tells nothing (the session is over whatever it says), and on
        a real network the wait is a round trip a person waits through (issue 13). RFC 5321 only asks the
        server to reply before it closes, which it does; the server sees an ordinary QUIT, and the bytes
        reach the kernel as they are written, before the socket closes behind them (a FIN after them).
        Not polite after the run's budget ran out: the session stopped mid-command, a QUIT would only wait."""
        transports = [*self._transports, self.smtp.transport]
        try:
            transport = self.smtp.transport
            if polite and self.smtp.is_connected and isinstance(transport, asyncio.WriteTransport) \
                    and not transport.is_closing():
                self.transcript.client("QUIT")
                with contextlib.suppress(Exception):  # the session is over either way; nothing to report
                    transport.write(b"QUIT\r\n")
        finally:
            # In `finally`: a cancelled run (its client left) is cancelled again at every await, QUIT's
            # included, and the socket must close all the same.
            self.smtp.close()
            for transport in transports:
                if isinstance(transport, asyncio.Transport):  # abort() after a graceful close() forces it
                    # close() leaves a TLS transport waiting for the peer's close_notify (up to 30 s), a plain
                    # one waiting to send what a stalled server never reads, and the socket open until then:
                    # a caller whose loop ends first leaks it. After QUIT, abort.
                    transport.abort()
        await asyncio.sleep(0)  # one loop turn runs the transport's connection_lost: the socket closes

    async def _call(self, line: str, coro: Awaitable[SMTPResponse]) -> Reply:
        """Record the command, await aiosmtplib, record the reply: any SMTP code is a Reply, anything else
        (timeouts, disconnects, TLS errors, codes that are no SMTP reply) a ProbeError."""
        what = line.split(" ", 1)[0]
        self.transcript.client(line)
        try:
            response = await coro
            reply = Reply(response.code, self.text.reply(response.message))
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code < 0:
                raise self._fail(exc, what) from None
            reply = Reply(exc.code, self.text.reply(exc.message))
        except Exception as exc:
            raise self._fail(exc, what) from None
        self.transcript.server(reply.code, reply.text)
        if not reply.valid:
            raise self._fail(ProbeError("protocol_error", f"invalid reply to {what}: {reply}"), what)
        return reply

    def _fail(self, exc: BaseException, what: str) -> ProbeError:
        error = cleaned(map_exception(exc, what), self.text)
        self.transcript.note(error.message)
        return error

    def _note_tls(self) -> None:
        if self.smtp.transport is not None:
            self._transports.append(self.smtp.transport)
        obj = self.ssl_object
        if obj is not None:
            cipher = obj.cipher()
            self.transcript.note(f"TLS established: {obj.version()} {cipher[0] if cipher else ''}".rstrip())


def helo_name_of(smtp: aiosmtplib.SMTP) -> str:
    return smtp.local_hostname or DEFAULT_HELO_NAME
