"""Shared helpers for the engine tests (tests/diag/test_engine_*.py): real peers on loopback only.

    srv = fake_smtp_factory(auth="required", tls="starttls")      # the fake_smtp pytest plugin
    report = await run(config_for(srv, username=USER, password=PASSWORD))
    assert_failed_at(report, "auth", "auth.bad_credentials")

Besides FakeSMTP there are raw TCP peers for what an SMTP server would never do: a listener that accepts
and stays silent, one that answers with fixed bytes (HTTP, SSH), and a listener whose accept queue is full
so the kernel drops the next SYN. Every host is 127.0.0.1, an IP literal, so no DNS query leaves the machine.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest

from diag.config import SmtpConfig, TlsMode
from diag.report import Report, StageResult, Status
from diag.secret import Secret
from fake_smtp import FakeSMTP
from tests import certs

LOOPBACK = "127.0.0.1"
USER = "alice@example.com"
PASSWORD = "pw-7c1e9a-Planted"
FROM = "alerts@example.com"
RECIPIENT = "ops@example.net"
STAGES = ("config", "dns", "connect", "ehlo", "tls", "auth", "mail_from", "rcpt_to", "send")
# A timeout small enough to keep the suite fast, large enough for a loaded CI machine on loopback.
SHORT_TIMEOUT_S = 0.7


def config_for(
    port: int,
    *,
    username: str | None = None,
    password: str | None = None,
    tls_mode: TlsMode | str = TlsMode.AUTO,
    timeout_s: float = 5.0,
    **more: Any,
) -> SmtpConfig:
    """A config for a peer on 127.0.0.1:port; `password` is wrapped in Secret."""
    return SmtpConfig(
        host=more.pop("host", LOOPBACK),
        port=port,
        from_email=more.pop("from_email", FROM),
        username=username,
        password=Secret(password) if password is not None else None,
        tls_mode=TlsMode(tls_mode),
        timeout_s=timeout_s,
        **more,
    )


def stage(report: Report, name: str) -> StageResult:
    return report.stage(name)


def assert_failed_at(report: Report, name: str, code: str) -> StageResult:
    """`name` failed with `code`, every stage before it did not fail, every stage after it is skipped
    with a reason that names the stage that stopped the run."""
    result = report.stage(name)
    assert result.status is Status.FAILED, (result.status, result.summary, result.finding)
    assert result.finding is not None and result.finding.code == code, result.finding
    assert result.summary and result.finding.cause and result.finding.fix
    assert report.verdict == "invalid"
    index = STAGES.index(name)
    for before in STAGES[:index]:
        assert report.stage(before).status is not Status.FAILED, before
    for after in STAGES[index + 1 :]:
        skipped = report.stage(after)
        assert skipped.status is Status.SKIPPED, (after, skipped.status, skipped.summary)
        assert skipped.summary == f"Not run: the {name} stage failed.", (after, skipped.summary)
        assert skipped.finding is None
    return result


def assert_warning_at(report: Report, name: str, code: str) -> StageResult:
    result = report.stage(name)
    assert result.status is Status.WARNING, (result.status, result.summary, result.finding)
    assert result.finding is not None and result.finding.code == code, result.finding
    return result


def transcript_text(report: Report) -> str:
    return "\n".join(f"{line.direction}: {line.text}" for s in report.stages for line in s.transcript)


# -- certificate material ----------------------------------------------------------------------------


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    path = tmp_path / "certs"
    path.mkdir()
    return path


def tls_server(
    factory: Callable[..., FakeSMTP], files: certs.CertFiles, **options: Any
) -> FakeSMTP:
    """A FakeSMTP serving `files` (tests.certs) on STARTTLS and implicit TLS unless told otherwise."""
    options.setdefault("tls", "both")
    return factory(cert=files.cert_path, key=files.key_path, **options)


# -- raw TCP peers -----------------------------------------------------------------------------------


class ThreadedListener:
    """A TCP listener on 127.0.0.1 served by a thread: `on_accept(conn)` for each connection. Accepted sockets
    stay open until the listener stops (so a client sees silence, not a close), then all of them close."""

    thread_name = "listener"

    def __init__(self) -> None:
        self._listener = socket.create_server((LOOPBACK, 0))
        self._listener.settimeout(0.05)  # so the accept loop sees the stop flag
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            self.on_accept(conn)

    def on_accept(self, conn: socket.socket) -> None:
        raise NotImplementedError


class RawPeer(ThreadedListener):
    """A TCP listener on 127.0.0.1 that accepts and then either stays silent or sends `banner` once.

    Accepted sockets stay open until the peer stops, so the client sees silence, not a close."""

    thread_name = "raw-peer"

    def __init__(self, banner: bytes | None = None, *, close_after: bool = False) -> None:
        self.banner = banner
        self.close_after = close_after
        self.accepted = 0
        self.accepted_event = threading.Event()
        super().__init__()

    def on_accept(self, conn: socket.socket) -> None:
        self.accepted += 1
        self.accepted_event.set()
        if self.banner is not None:
            with contextlib.suppress(OSError):
                conn.sendall(self.banner)
        if self.close_after:
            conn.close()


@pytest.fixture
def raw_peer() -> Iterator[Callable[..., RawPeer]]:
    peers: list[RawPeer] = []

    def start(banner: bytes | None = None, *, close_after: bool = False) -> RawPeer:
        peer = RawPeer(banner, close_after=close_after).__enter__()
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.__exit__(None, None, None)


class FullBacklog:
    """A listener that never accepts, with listen(0), whose accept queue is filled by our own connections:
    the kernel then drops the next SYN, as a firewall that silently discards packets does."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(0)
        self.port: int = self.listener.getsockname()[1]
        self.fillers: list[socket.socket] = []
        # Fill until a connection attempt stays unanswered: that attempt's SYN was dropped, as the next
        # one (the engine's) will be. Linux queues backlog + 1 connections, so this takes two attempts.
        for _ in range(16):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            self.fillers.append(sock)
            sock.connect_ex((LOOPBACK, self.port))
            _, writable, _ = select.select([], [sock], [], 0.2)
            if not writable:
                break
        else:  # pragma: no cover - only on a kernel that never drops SYNs
            raise RuntimeError("the accept queue never filled up")

    def close(self) -> None:
        for sock in self.fillers:
            sock.close()
        self.listener.close()


@pytest.fixture
def full_backlog() -> Iterator[FullBacklog]:
    listener = FullBacklog()
    yield listener
    listener.close()


def free_port() -> int:
    """A port nothing listens on: bound, then closed (the kernel refuses connections to it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class ScriptedSmtp(ThreadedListener):
    """A minimal SMTP peer for what aiosmtpd cannot be made to do: advertise only given EHLO lines
    (AUTH XOAUTH2 only, AUTH LOGIN only), or finish STARTTLS with a server context of our choosing.

    `replies` maps a verb ("AUTH", "MAIL", ...) to the reply line; AUTH LOGIN walks through its 334 prompt
    first. Every line received is kept in `received` (bytes), so tests can see what went over the wire."""

    thread_name = "scripted-smtp"

    def __init__(
        self,
        ehlo_lines: tuple[str, ...] = (),
        *,
        tls_context: ssl.SSLContext | None = None,
        replies: dict[str, str] | None = None,
    ) -> None:
        self.ehlo_lines = ehlo_lines
        self.tls_context = tls_context
        self.replies = replies or {}
        self.received: list[bytes] = []
        super().__init__()

    def on_accept(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with contextlib.suppress(OSError, ssl.SSLError):
            self._converse(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def _converse(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        conn.sendall(b"220 scripted.test ESMTP\r\n")
        while line := reader.readline(1024):
            self.received.append(line)
            verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
            if verb == "EHLO":
                lines = ["scripted.test", *self.ehlo_lines]
                text = "".join(f"250-{item}\r\n" for item in lines[:-1]) + f"250 {lines[-1]}\r\n"
                conn.sendall(text.encode())
            elif verb == "STARTTLS" and self.tls_context is not None:
                conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
                conn = self.tls_context.wrap_socket(conn, server_side=True)  # fails here on a mismatch
                self._conns.append(conn)
                reader = conn.makefile("rb")
            elif verb == "AUTH" and line.upper().startswith(b"AUTH LOGIN"):
                if len(line.split()) == 2:  # the username comes in answer to a first prompt
                    conn.sendall(b"334 VXNlcm5hbWU6\r\n")
                    self.received.append(reader.readline(1024))
                conn.sendall(b"334 UGFzc3dvcmQ6\r\n")
                self.received.append(reader.readline(1024))
                conn.sendall(self.replies.get("AUTH", "535 5.7.8 Authentication failed").encode() + b"\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(self.replies.get(verb, "250 2.0.0 OK").encode() + b"\r\n")


@pytest.fixture
def scripted_smtp() -> Iterator[Callable[..., ScriptedSmtp]]:
    peers: list[ScriptedSmtp] = []

    def start(*ehlo_lines: str, **options: Any) -> ScriptedSmtp:
        peer = ScriptedSmtp(ehlo_lines, **options).__enter__()
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.__exit__(None, None, None)
