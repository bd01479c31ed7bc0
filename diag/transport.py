"""The I/O boundary under the SMTP session: raw TCP (and TLS) to one vetted address, and every exception
the socket, ssl and aiosmtplib can raise mapped into `ProbeError(kind)`, here and nowhere else.

    ProbeError.kind
      refused | timeout | unreachable | blocked | connect_error   the TCP connection (open_socket)
      greeting_timeout                                             TCP is up, the greeting never came
      timeout | disconnected | protocol_error                      a command on a live session
      tls_verify (.cause: ssl.SSLCertVerificationError)            certificate verification failed
      tls_handshake (.cause: ssl.SSLError or OSError)              any other handshake failure

`finding_kind` turns a ProbeError into the kind a stage reports (diag.kinds) when the stage has nothing
more precise to say. The probe (diag.probe) drives SMTP over these sockets; the connect stage also uses
`completes_tls_handshake` and `exchange` to find out what a silent port speaks.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from typing import Final, Literal

import aiosmtplib

from diag.kinds import AnyKind, ConnectKind, Kind, TlsKind

ProbeErrorKind = Literal[
    "refused",
    "timeout",
    "unreachable",
    "blocked",
    "connect_error",
    "greeting_timeout",
    "disconnected",
    "protocol_error",
    "tls_verify",
    "tls_handshake",
]

UNREACHABLE_ERRNOS: Final = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN}
)
# What connect() says when this machine forbids the connection: netfilter dropping our own SYN in OUTPUT
# (EPERM), a "prohibit" route (EACCES), an LSM or seccomp policy, a BPF cgroup hook (some CNIs' policies).
BLOCKED_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM})


class ProbeError(Exception):
    def __init__(self, kind: ProbeErrorKind, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.kind: ProbeErrorKind = kind
        self.message = message
        self.cause = cause

    @property
    def finding_kind(self) -> Kind:
        """The kind a stage reports for this error when it has nothing more precise to say."""
        return _FINDING_KINDS[self.kind]


_FINDING_KINDS: Final[dict[ProbeErrorKind, Kind]] = {
    "refused": ConnectKind.REFUSED,
    "timeout": AnyKind.TIMEOUT,
    # Errnos outside the known sets: no route is the likeliest reading (the finding quotes the kernel).
    "unreachable": ConnectKind.UNREACHABLE,
    "connect_error": ConnectKind.UNREACHABLE,
    "blocked": ConnectKind.BLOCKED,
    "greeting_timeout": AnyKind.TIMEOUT,
    "disconnected": AnyKind.DISCONNECTED,
    "protocol_error": AnyKind.PROTOCOL_ERROR,
    "tls_verify": TlsKind.UNTRUSTED,
    "tls_handshake": TlsKind.HANDSHAKE_FAILED,
}


def _tls_error_in(exc: BaseException) -> ssl.SSLError | None:
    """aiosmtplib wraps handshake errors (SSLError is an OSError) in its own: find the SSL error in the chain."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def map_exception(exc: BaseException, what: str) -> ProbeError:
    """What went wrong during `what` on a live session (or its TLS handshake), as a ProbeError."""
    if isinstance(exc, ProbeError):
        return exc
    tls = _tls_error_in(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return ProbeError("tls_verify", f"certificate verification failed: {tls.verify_message}", cause=tls)
    if tls is not None:
        return ProbeError("tls_handshake", f"TLS handshake failed: {tls.reason or tls}", cause=tls)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError) and "upgrading transport" in str(exc):
        # The server said 220 to STARTTLS, then did not complete the handshake: a TLS failure, not silence.
        return ProbeError("tls_handshake", "the server agreed to STARTTLS but never completed the TLS handshake",
                          cause=exc)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return ProbeError("timeout", f"no reply to {what} within the timeout", cause=exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code < 0:
        return ProbeError("protocol_error", f"invalid reply to {what}: {exc.message[:200]}", cause=exc)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError | EOFError):
        return ProbeError("disconnected", f"the server closed the connection during {what}", cause=exc)
    if isinstance(exc, aiosmtplib.SMTPConnectError) and isinstance(exc.__cause__, ConnectionError):
        return ProbeError("disconnected", f"the server closed the connection during {what}", cause=exc)
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return ProbeError("protocol_error", f"{what} failed: {exc}", cause=exc)
    raise exc


def map_connect_exception(exc: BaseException, timeout_s: float) -> ProbeError:
    """What went wrong opening the TCP connection. The message leaves the address to whoever says where."""
    if isinstance(exc, TimeoutError):  # our deadline, or the kernel's ETIMEDOUT
        return ProbeError("timeout", f"no answer within {timeout_s:g} s", cause=exc)
    if isinstance(exc, ConnectionRefusedError):
        return ProbeError("refused", "connection refused", cause=exc)
    if isinstance(exc, OSError):
        # The system's own words: asyncio replaces them with "Connect call failed (address)" when the error
        # arrives after connect() returned (an ICMP reject from a firewall on the way), keeping the errno.
        said = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
        if exc.errno in BLOCKED_ERRNOS:
            return ProbeError("blocked", said, cause=exc)
        return ProbeError("unreachable" if exc.errno in UNREACHABLE_ERRNOS else "connect_error", said, cause=exc)
    raise exc


async def open_socket(address: str, port: int, timeout_s: float) -> socket.socket:
    """A TCP connection to one vetted address, or ProbeError(refused | timeout | unreachable | blocked |
    connect_error) whose message says what happened, without the address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        async with asyncio.timeout(timeout_s):
            await _connect(sock, (address, port))
    except Exception as exc:
        sock.close()
        raise map_connect_exception(exc, timeout_s) from None
    except BaseException:  # cancelled: the socket must not outlive the run
        sock.close()
        raise
    return sock


# What a non-blocking connect() answers while the handshake goes on (EINTR: a signal came; it goes on too).
_CONNECT_IN_PROGRESS: Final = frozenset({errno.EINPROGRESS, errno.EAGAIN, errno.EINTR})


async def _connect(sock: socket.socket, address: tuple[str, int]) -> None:
    """What the loop's sock_connect does (start connect(), wait until the socket is writable, read
    SO_ERROR), without its address lookup: uvloop's asks getaddrinfo, in libuv's thread pool, even for an IP
    literal, which is all this module connects to (~70 instead of ~25 us of the event loop's CPU a
    connection, and a thread round trip). Errors are the kernel's errno as an OSError, as sock_connect's."""
    code = sock.connect_ex(address)
    if code in _CONNECT_IN_PROGRESS:
        loop = asyncio.get_running_loop()
        writable = loop.create_future()
        loop.add_writer(sock, _wake, writable)
        try:
            await writable
        finally:
            loop.remove_writer(sock)
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():  # cancelled by the timeout while the loop was about to call this
        future.set_result(None)


async def completes_tls_handshake(
    address: str, port: int, server_hostname: str, context: ssl.SSLContext, timeout_s: float
) -> bool:
    """Whether a fresh connection to the port completes a TLS handshake (with a non-verifying `context`)."""
    try:
        sock = await open_socket(address, port, timeout_s)
    except ProbeError:
        return False
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(sock=sock, ssl=context, server_hostname=server_hostname)
    except (OSError, TimeoutError):  # ssl.SSLError is an OSError
        sock.close()
        return False
    except BaseException:  # cancelled: the socket must not outlive the run
        sock.close()
        raise
    # abort, not close: a TLS close waits for the server's close_notify, and the socket with it.
    writer.transport.abort()
    return True


async def exchange(
    address: str, port: int, send: bytes, *, limit: int, connect_timeout_s: float, read_timeout_s: float
) -> bytes | None:
    """Send `send` on a fresh connection and read up to `limit` bytes: b"" when nothing came in time, None
    when the connection could not be opened."""
    try:
        sock = await open_socket(address, port, connect_timeout_s)
    except ProbeError:
        return None
    try:
        reader, writer = await asyncio.open_connection(sock=sock, limit=limit * 2)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(send)
        async with asyncio.timeout(read_timeout_s):
            return await reader.read(limit)
    except (OSError, TimeoutError):
        return b""
    finally:
        writer.close()
