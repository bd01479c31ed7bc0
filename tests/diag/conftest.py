"""Shared helpers for the engine tests (tests/diag/test_engine_*.py): real peers on loopback only.

    srv = fake_smtp_factory(auth="required", tls="starttls")      # the fake_smtp pytest plugin
    report = await run(config_for(srv, username=USER, password=PASSWORD))
    assert_failed_at(report, "auth", "auth.bad_credentials")

Besides FakeSMTP there is the scripted peer (tests/peer.py) for what an SMTP server would never do (stay
silent, answer with fixed bytes, advertise only given EHLO lines), and here a listener whose accept queue
is full so the kernel drops the next SYN. Every host is 127.0.0.1, an IP literal, so no DNS query leaves the machine.
"""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


# -- a listener the kernel stops answering----------------------------------------------------------------------------


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

