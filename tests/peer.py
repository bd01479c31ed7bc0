"""The one scripted peer of the tests: a TCP server on 127.0.0.1 where each behaviour is one small async
function over a connection (`reader`, `writer`). Hostile servers, silent listeners, fixed banners and a
minimal scriptable SMTP server (`SmtpScript`) are all behaviours of the same `Peer`.

    async with Peer(never_greets) as peer:           # on the test's own event loop
        report = await run(SmtpConfig(host="127.0.0.1", port=peer.port, ...))
    assert peer.connections >= 1

    with Peer(never_greets) as peer:                 # on a loop in a thread of its own, for a test that
        proc = subprocess.Popen([... str(peer.port)])  # blocks (a subprocess, a sync client)
        assert peer.call(peer.wait_connections(1, 20))

Every connection gets the same behaviour; `connections` counts accepted connections, `wait_connections()`
waits for them, `wait_all_closed()` tells whether the client closed every one. Leaving the context closes
the listener and cancels every handler, so a behaviour may loop forever (and a held connection ends). What
the peer writes is bounded by the socket buffers: it always drains; what it reads is bounded per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, Self, TypeVar

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Behaviour = Callable[[Reader, Writer], Awaitable[None]]
T = TypeVar("T")

LOOPBACK: Final = "127.0.0.1"
READ_LIMIT: Final = 64 * 1024  # what the peer buffers per line it reads from the client
ONE_MIB: Final = 1024 * 1024
STEP_TIMEOUT_S: Final = 10.0  # how long a thread-mode start, stop or call may take
SSH_BANNER: Final = b"SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n"
HTTP_RESPONSE: Final = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"Connection: close\r\n\r\nBad Request"
)


class Peer:
    """An asyncio TCP server on 127.0.0.1 that runs `behaviour` for every connection.

    `async with` runs it on the caller's loop; `with` runs it on a loop in its own thread (then `call()`
    awaits something on that loop from the caller's thread)."""

    def __init__(self, behaviour: Behaviour, *, host: str = LOOPBACK) -> None:
        self.behaviour = behaviour
        self.host = host  # another loopback address (127.0.0.2) is a host that is not "localhost" to a client
        self.port = 0
        self.connections = 0
        self.open = 0  # connections whose handler is still running
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._arrived = asyncio.Event()  # set at each new connection
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # thread mode only
        self._thread: threading.Thread | None = None
        self._closing = False  # __aexit__ has begun: a connection accepted from now on is closed at once

    # -- on the caller's loop ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, self.host, 0, limit=READ_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._closing = True
        # Stop accepting, then let a connection accepted a moment ago become a transport before the server
        # closes: on Python 3.11, a transport made for a server already closed fails an assertion in
        # Server._attach and leaves its socket open (a ResourceWarning, seen when a run's probe connected
        # just as a test left its peer). Its handler sees _closing and closes it.
        for sock in self._server.sockets:
            asyncio.get_running_loop().remove_reader(sock.fileno())
        for _ in range(3):
            await asyncio.sleep(0)
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    # -- in a thread of its own -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="peer", daemon=True)
        self._thread.start()
        return self.call(self.__aenter__())

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._loop is not None and self._thread is not None
        try:
            self.call(self.__aexit__(exc_type, exc, tb))
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(STEP_TIMEOUT_S)
            self._loop.close()

    def call(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` on the peer's own loop (thread mode) and return its result."""
        assert self._loop is not None, "call() is for a peer started with `with`"

        async def on_the_peers_loop() -> T:
            return await awaitable

        future = asyncio.run_coroutine_threadsafe(on_the_peers_loop(), self._loop)
        return future.result(STEP_TIMEOUT_S * 3)

    # -- what a test waits for --------------------------------------------------------------------------

    async def wait_connections(self, count: int, timeout_s: float) -> bool:
        """Whether `count` connections have been accepted within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.connections < count:
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            return False
        return True

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
        self._arrived.set()
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if not self._closing:
                await self.behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up (or refused our TLS): that is the client's right
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


def says(data: bytes) -> Behaviour:
    """Sends `data` at once (a banner, a greeting, a line that is none), then stays silent."""

    async def behaviour(reader: Reader, writer: Writer) -> None:
        await send(writer, data)
        await hold(reader)

    behaviour.__name__ = f"says({data!r})"
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


ssh_banner = says(SSH_BANNER)


@dataclass
class SmtpScript:
    """A minimal SMTP server, for what aiosmtpd cannot be made to do: advertise only the given EHLO lines
    (AUTH XOAUTH2 only, AUTH LOGIN only), or finish STARTTLS with a server context of our choosing.

    `replies` maps a verb ("AUTH", "MAIL", ...) to the reply line (250 by default); AUTH LOGIN walks
    through its 334 prompts first. Every line received is kept in `lines` (decoded, without CRLF), so a
    test sees what went over the wire."""

    ehlo_lines: tuple[str, ...] = ()
    tls_context: ssl.SSLContext | None = None
    replies: dict[str, str] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    async def __call__(self, reader: Reader, writer: Writer) -> None:
        channel = LineChannel(reader, writer)
        await channel.send(b"220 scripted.test ESMTP\r\n")
        while (line := await self._read(channel)) is not None:
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                offered = ["scripted.test", *self.ehlo_lines]
                body = "".join(f"250-{item}\r\n" for item in offered[:-1]) + f"250 {offered[-1]}\r\n"
                await channel.send(body.encode())
            elif verb == "STARTTLS" and self.tls_context is not None:
                await channel.send(b"220 2.0.0 Ready to start TLS\r\n")
                await channel.start_tls(self.tls_context)  # raises ssl.SSLError on a mismatch
            elif line.upper().startswith("AUTH LOGIN"):
                if len(line.split()) == 2:  # the username comes in answer to a first prompt
                    await channel.send(b"334 VXNlcm5hbWU6\r\n")
                    await self._read(channel)
                await channel.send(b"334 UGFzc3dvcmQ6\r\n")
                await self._read(channel)
                await channel.send(self.replies.get("AUTH", "535 5.7.8 Authentication failed").encode() + b"\r\n")
            elif verb == "QUIT":
                await channel.send(b"221 2.0.0 Bye\r\n")
                return
            else:
                await channel.send(self.replies.get(verb, "250 2.0.0 OK").encode() + b"\r\n")

    async def _read(self, channel: LineChannel) -> str | None:
        """One line, kept in `lines`; None when the client has gone."""
        raw = await channel.readline()
        if not raw:
            return None
        line = raw.decode("latin-1").rstrip("\r\n")
        self.lines.append(line)
        return line


class LineChannel:
    """Lines in and out of one connection, in plaintext or, after `start_tls`, over TLS driven by hand.

    Why not asyncio's StreamWriter.start_tls: when the handshake fails, asyncio closes the socket without
    sending the alert OpenSSL wrote, so the client sees a bare disconnect where a real server's alert names
    the failure (SSLV3_ALERT_HANDSHAKE_FAILURE). Driving OpenSSL over memory BIOs sends the alert first."""

    def __init__(self, reader: Reader, writer: Writer) -> None:
        self.reader, self.writer = reader, writer
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None
        self._plain = b""  # decrypted bytes not yet returned as a line

    async def readline(self) -> bytes:
        if self._tls is None:
            return await self.reader.readline()
        while b"\n" not in self._plain and len(self._plain) < READ_LIMIT:
            try:
                self._plain += self._tls.read(READ_LIMIT)
            except ssl.SSLWantReadError:
                if not await self._receive():
                    break
        line, newline, self._plain = self._plain.partition(b"\n")
        return line + newline

    async def send(self, data: bytes) -> None:
        if self._tls is None:
            await send(self.writer, data)
            return
        self._tls.write(data)
        await self._flush()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._receive():
                    raise ConnectionResetError("the client left during the TLS handshake") from None
            except ssl.SSLError:
                await self._flush()  # the alert that names the failure
                raise
            else:
                await self._flush()
                return

    async def _receive(self) -> bool:
        """Feed what the client sent next to OpenSSL; False when the client has closed."""
        data = await self.reader.read(READ_LIMIT)
        if not data:
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    async def _flush(self) -> None:
        if data := self._outgoing.read():
            await send(self.writer, data)


def handshakes(context: ssl.SSLContext) -> Behaviour:
    """A TLS handshake on the first byte (implicit TLS) with `context`, then a hang-up. A failed handshake
    still sends OpenSSL's alert (see LineChannel), as a blocking server would."""

    async def behaviour(reader: Reader, writer: Writer) -> None:
        await LineChannel(reader, writer).start_tls(context)

    return behaviour
