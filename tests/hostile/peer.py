"""A scripted hostile SMTP peer on 127.0.0.1: each behaviour is one small async function over a connection.

    async with HostilePeer(never_greets) as peer:
        report = await run(SmtpConfig(host="127.0.0.1", port=peer.port, ...))
    assert peer.connections >= 1

The peer runs on the caller's event loop (an asyncio server on an ephemeral port). Every connection gets
the same behaviour; `connections` counts accepted connections, `wait_all_closed()` tells whether the
client closed every one. Leaving the context closes the listener and cancels every handler, so a
behaviour may loop forever. What the peer writes is bounded by the socket buffers: it always drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Final

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Behaviour = Callable[[Reader, Writer], Awaitable[None]]

LOOPBACK: Final = "127.0.0.1"
READ_LIMIT: Final = 64 * 1024  # what the peer buffers per line it reads from the client
ONE_MIB: Final = 1024 * 1024
SSH_BANNER: Final = b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n"
HTTP_RESPONSE: Final = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"Connection: close\r\n\r\nBad Request"
)


class HostilePeer:
    """An asyncio TCP server on 127.0.0.1 that runs `behaviour` for every connection."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.port = 0
        self.connections = 0
        self.open = 0  # connections whose handler is still running
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> HostilePeer:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0, limit=READ_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_all_closed(self, timeout_s: float) -> bool:
        """Whether every connection has ended within `timeout_s` (the client closed what it opened)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._all_closed.wait()
        except TimeoutError:
            return False
        return True

    async def _handle(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        self.open += 1
        self._all_closed.clear()
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self.behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up: that is the client's right
        except asyncio.CancelledError:
            # Stopped by __aexit__. Ending normally rather than cancelled: Python 3.11's start_server
            # callback logs a cancelled handler task as an error.
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self.open -= 1
            if self.open == 0:
                self._all_closed.set()


# -- helpers for behaviours ---------------------------------------------------------------------------------


async def send(writer: Writer, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def hold(reader: Reader) -> None:
    """Stay connected and silent until the client leaves (reads are discarded, never buffered)."""
    while await reader.read(4096):
        pass


async def still_there(reader: Reader, seconds: float) -> bool:
    """Wait `seconds` (the peer's own pace, not synchronisation); False as soon as the client hangs up."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return True
    return False


async def greet(reader: Reader, writer: Writer) -> None:
    await send(writer, b"220 hostile.test ESMTP\r\n")


async def ehlo_then(reader: Reader, writer: Writer, capabilities: list[bytes]) -> None:
    """Greet, read EHLO, advertise `capabilities`."""
    await greet(reader, writer)
    await reader.readline()
    lines = [b"hostile.test", *capabilities]
    body = b"".join(b"250-" + c + b"\r\n" for c in lines[:-1]) + b"250 " + lines[-1] + b"\r\n"
    await send(writer, body)


async def answer_plainly(reader: Reader, writer: Writer) -> None:
    """A minimal well-behaved tail: 250 to anything, 221 to QUIT."""
    while line := await reader.readline():
        if line.upper().startswith(b"QUIT"):
            await send(writer, b"221 bye\r\n")
            return
        await send(writer, b"250 ok\r\n")


# -- behaviours ---------------------------------------------------------------------------------------------


async def never_greets(reader: Reader, writer: Writer) -> None:
    await hold(reader)


async def silent_after_greeting(reader: Reader, writer: Writer) -> None:
    await greet(reader, writer)
    await hold(reader)


async def drips(reader: Reader, writer: Writer) -> None:
    """One byte of a (valid) greeting per second."""
    for byte in b"220 slow.test ESMTP\r\n":
        await send(writer, bytes([byte]))
        if not await still_there(reader, 1.0):
            return
    await hold(reader)


async def huge_greeting_line(reader: Reader, writer: Writer) -> None:
    """A 1 MiB greeting line (no line break until the end)."""
    chunk = b"x" * 65536
    await send(writer, b"220 ")
    for _ in range(ONE_MIB // len(chunk)):
        await send(writer, chunk)
    await send(writer, b"\r\n")
    await hold(reader)


async def endless_continuation(reader: Reader, writer: Writer) -> None:
    """'220-' continuation lines forever: the greeting never ends."""
    line = b"220-still greeting you, " + b"y" * 40 + b"\r\n"
    batch = line * 256
    while True:
        await send(writer, batch)


def invalid_greeting(line: bytes) -> Behaviour:
    async def behaviour(reader: Reader, writer: Writer) -> None:
        await send(writer, line + b"\r\n")
        await hold(reader)

    behaviour.__name__ = f"invalid_greeting({line!r})"
    return behaviour


def invalid_ehlo_reply(line: bytes) -> Behaviour:
    async def behaviour(reader: Reader, writer: Writer) -> None:
        await greet(reader, writer)
        await reader.readline()
        await send(writer, line + b"\r\n")
        await hold(reader)

    behaviour.__name__ = f"invalid_ehlo_reply({line!r})"
    return behaviour


async def closes_at_once(reader: Reader, writer: Writer) -> None:
    return  # the handler closes the connection


async def closes_mid_ehlo(reader: Reader, writer: Writer) -> None:
    """Greet, read EHLO, send half a multi-line reply, hang up."""
    await greet(reader, writer)
    await reader.readline()
    await send(writer, b"250-hostile.test\r\n250-PIPELINING\r\n")


async def starttls_454(reader: Reader, writer: Writer) -> None:
    await ehlo_then(reader, writer, [b"PIPELINING", b"STARTTLS"])
    while line := await reader.readline():
        if line.upper().startswith(b"STARTTLS"):
            await send(writer, b"454 4.7.0 TLS not available due to local problem\r\n")
        elif line.upper().startswith(b"QUIT"):
            await send(writer, b"221 bye\r\n")
            return
        else:
            await send(writer, b"250 ok\r\n")


async def _until_starttls(reader: Reader, writer: Writer) -> None:
    await ehlo_then(reader, writer, [b"PIPELINING", b"STARTTLS"])
    while line := await reader.readline():
        if line.upper().startswith(b"STARTTLS"):
            await send(writer, b"220 2.0.0 Ready to start TLS\r\n")
            return
        await send(writer, b"250 ok\r\n")


async def starttls_then_plaintext(reader: Reader, writer: Writer) -> None:
    """Says 220 to STARTTLS, then answers the ClientHello in plaintext SMTP (as a server that never
    really started TLS and reads the ClientHello as a bad command)."""
    await _until_starttls(reader, writer)
    await reader.read(1)  # the first bytes of the ClientHello
    await send(writer, b"500 5.5.2 Error: bad syntax\r\n")
    await hold(reader)


async def starttls_220_and_plaintext_at_once(reader: Reader, writer: Writer) -> None:
    """Says 220 to STARTTLS and, in the same packet, a plaintext line: data that is already there before
    any TLS (the pattern of STARTTLS response injection, CVE-2011-0411's mirror image)."""
    await ehlo_then(reader, writer, [b"PIPELINING", b"STARTTLS"])
    while line := await reader.readline():
        if line.upper().startswith(b"STARTTLS"):
            await send(writer, b"220 2.0.0 Ready to start TLS\r\n250 injected plaintext\r\n")
            await hold(reader)
            return
        await send(writer, b"250 ok\r\n")


async def starttls_then_garbage(reader: Reader, writer: Writer) -> None:
    """Says 220 to STARTTLS, then answers the ClientHello with a TLS record header and random bytes."""
    await _until_starttls(reader, writer)
    await reader.read(1)  # the first bytes of the ClientHello
    noise = random.Random(20240515).randbytes(4096)
    await send(writer, b"\x16\x03\x03\x10\x00" + noise)
    await hold(reader)


async def starttls_then_random_bytes(reader: Reader, writer: Writer) -> None:
    """Says 220 to STARTTLS, then answers with bytes that are neither TLS nor text."""
    await _until_starttls(reader, writer)
    await reader.read(1)  # the first bytes of the ClientHello
    noise = random.Random(7).randbytes(4096)
    await send(writer, b"\x8f\x00" + noise)
    await hold(reader)


async def endless_334(reader: Reader, writer: Writer) -> None:
    """AUTH LOGIN is offered; every AUTH line the client sends is answered with yet another 334 challenge."""
    await ehlo_then(reader, writer, [b"PIPELINING", b"AUTH LOGIN"])
    in_auth = False
    while line := await reader.readline():
        if line.upper().startswith(b"AUTH"):
            in_auth = True
        if in_auth and not line.upper().startswith(b"QUIT"):
            await send(writer, b"334 VXNlcm5hbWU6\r\n")  # "Username:", again and again
        elif line.upper().startswith(b"QUIT"):
            await send(writer, b"221 bye\r\n")
            return
        else:
            await send(writer, b"250 ok\r\n")


async def drops_at_mail_from(reader: Reader, writer: Writer) -> None:
    """AUTH PLAIN and LOGIN accepted (235) whatever the credentials, then hangs up at MAIL FROM."""
    await ehlo_then(reader, writer, [b"PIPELINING", b"AUTH PLAIN LOGIN"])
    while line := await reader.readline():
        upper = line.upper()
        if upper.startswith(b"AUTH PLAIN"):
            await send(writer, b"235 2.7.0 Authentication successful\r\n")
        elif upper.startswith(b"AUTH LOGIN"):
            await send(writer, b"334 UGFzc3dvcmQ6\r\n")
            await reader.readline()
            await send(writer, b"235 2.7.0 Authentication successful\r\n")
        elif upper.startswith(b"MAIL"):
            return  # hang up without a word
        elif upper.startswith(b"QUIT"):
            await send(writer, b"221 bye\r\n")
            return
        else:
            await send(writer, b"250 ok\r\n")


async def http_server(reader: Reader, writer: Writer) -> None:
    """Speaks only when spoken to, and then HTTP."""
    if await reader.readline():
        await send(writer, HTTP_RESPONSE)


async def ssh_banner(reader: Reader, writer: Writer) -> None:
    await send(writer, SSH_BANNER)
    await hold(reader)
