"""The connect stage through `diag.runner.run`: real listeners on 127.0.0.1 for every failure but two.

`connect.unreachable` cannot be produced on loopback (there is always a route to 127.0.0.1), so that test
replaces the socket's `connect_ex` to answer the errno the kernel would give, and says so.
`connect.blocked` is produced for real: a "prohibit" route in a network namespace of the test's own makes
the kernel refuse connect() with EACCES, as a local firewall's reject rule or security policy does.
"""

from __future__ import annotations

import asyncio
import errno
import http.server
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from diag.findings import finding_for
from diag.kinds import ConnectKind
from diag.report import Status
from diag.runner import run
from diag.transport import BLOCKED_ERRNOS, UNREACHABLE_ERRNOS, ProbeError, open_socket
from fake_smtp import FakeSMTP, parse_fault
from tests.diag.conftest import (
    PASSWORD,
    SHORT_TIMEOUT_S,
    USER,
    FullBacklog,
    assert_failed_at,
    config_for,
)
from tests.dns_responder import DnsResponder, point_dns_stage_at
from tests.peer import (
    SSH_BANNER,
    Behaviour,
    Peer,
    answer_plainly,
    closes_at_once,
    greet,
    hold,
    http_server,
    says,
)


async def test_refused(refused_port: int) -> None:
    port = refused_port
    report = await run(config_for(port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.refused")
    assert result.summary == f"127.0.0.1:{port} refused the connection (tried 1 address(es))."
    assert result.facts["attempts"] == {"127.0.0.1": "refused"}
    assert result.finding is not None
    assert f"127.0.0.1 actively refused the connection on port {port}" in result.finding.cause
    assert "587" in result.finding.fix and "465" in result.finding.fix


def test_refused_names_port_2525_for_mailgun_and_sendgrid() -> None:
    """Host-based provider variant: the host cannot be smtp.mailgun.org offline, so finding_for directly."""
    for host in ("smtp.mailgun.org", "smtp.sendgrid.net"):
        finding = finding_for("connect", ConnectKind.REFUSED, config_for(587, host=host))
        assert "2525" in finding.fix, host
    assert "2525" not in finding_for("connect", ConnectKind.REFUSED, config_for(587, host="mail.example.com")).fix


async def test_timeout_when_the_syn_is_dropped(full_backlog: FullBacklog) -> None:
    """A listener whose accept queue is full: Linux drops the SYN, as an egress firewall does."""
    report = await run(config_for(full_backlog.port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.timeout")
    assert SHORT_TIMEOUT_S * 1000 * 0.9 <= result.duration_ms <= (SHORT_TIMEOUT_S + 1) * 1000
    assert f"within {SHORT_TIMEOUT_S:g} s" in result.summary
    assert result.facts["attempts"] == {"127.0.0.1": "timeout"}
    assert result.finding is not None
    assert "silently dropped" in result.finding.cause
    assert f"nc -vz 127.0.0.1 {full_backlog.port}" in result.finding.fix


def test_timeout_on_port_25_names_the_cloud_block() -> None:
    finding = finding_for("connect", ConnectKind.TIMEOUT, config_for(25, host="mail.example.com"))
    assert "block outbound port 25" in finding.cause and "587" in finding.fix


@pytest.mark.parametrize("code", sorted(UNREACHABLE_ERRNOS))
async def test_unreachable_errno_mapping(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """MOCK: no unreachable network exists on loopback, so the socket's connect_ex answers the kernel's errno.
    Both the I/O boundary (open_socket) and the runner's report are checked."""

    def no_route(self: socket.socket, address: Any) -> int:
        return code

    monkeypatch.setattr(socket.socket, "connect_ex", no_route)
    with pytest.raises(ProbeError) as raised:
        await open_socket("127.0.0.1", 587, 1.0)
    assert raised.value.kind == "unreachable"

    report = await run(config_for(587, timeout_s=1.0))
    result = assert_failed_at(report, "connect", "connect.unreachable")
    assert result.summary == "No route to 127.0.0.1:587."
    assert result.finding is not None
    assert os.strerror(code) in result.finding.cause  # the kernel's words, quoted (not the mock's message)
    if code == errno.EHOSTUNREACH:  # what an ICMP reject from a firewall gives: test_engine_connect_firewall.py
        assert "firewall" in result.finding.cause
    else:
        assert "no network route from this machine to 127.0.0.1" in result.finding.cause
        assert "default route" in result.finding.fix


@pytest.mark.parametrize("code", sorted(BLOCKED_ERRNOS))
async def test_permission_errors_are_blocked_at_the_boundary(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """MOCK, as above, for EPERM (a seccomp or BPF policy; the namespace test below makes EACCES for real):
    neither a refusal nor a missing route."""

    def denied(self: socket.socket, address: Any) -> int:
        return code

    monkeypatch.setattr(socket.socket, "connect_ex", denied)
    with pytest.raises(ProbeError) as raised:
        await open_socket("127.0.0.1", 587, 1.0)
    assert raised.value.kind == "blocked"
    assert raised.value.message == os.strerror(code)


BLOCKED_ADDRESS = "10.9.9.9"
# Runs inside the namespace: the whole engine, as a user's Python would call it; prints the connect stage.
RUN_IN_NAMESPACE = textwrap.dedent(
    f"""
    import json
    from diag.config import SmtpConfig
    from diag.runner import run_sync
    config = SmtpConfig(host="{BLOCKED_ADDRESS}", port=587, from_email="app@example.com", timeout_s=5.0)
    stage = run_sync(config).stage("connect")
    print(json.dumps({{"summary": stage.summary, "facts": stage.facts,
                      "code": stage.finding.code, "cause": stage.finding.cause, "fix": stage.finding.fix}}))
    """
)


def test_connect_denied_by_this_machine_is_blocked_not_unreachable() -> None:
    """Real EACCES: `unshare --net` gives the run a network namespace of its own (needs root, as this test
    machine is; it vanishes with the process, nothing to clean up) with a "prohibit" route to the server,
    so the kernel itself refuses connect() with "Permission denied", as a local firewall's reject rule or
    a security policy does. It was once called "no network route", with the address twice in the summary."""
    script = f"ip link set lo up && ip route add prohibit {BLOCKED_ADDRESS}/32 && exec {sys.executable} -c \"$0\""
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, RUN_IN_NAMESPACE],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    stage = json.loads(done.stdout.strip().splitlines()[-1])
    assert stage["code"] == "connect.blocked"
    assert stage["facts"]["attempts"] == {BLOCKED_ADDRESS: "blocked"}
    where = f"{BLOCKED_ADDRESS}:587"
    assert stage["summary"] == (
        f"The connection to {where} was blocked on this machine: Permission denied (tried 1 address(es))."
    )
    assert stage["summary"].count(BLOCKED_ADDRESS) == 1
    assert "no network route" not in stage["cause"]
    assert "blocked on this machine: permission denied by a local firewall or security policy" in stage["cause"]
    assert "egress rules" in stage["fix"] and "NetworkPolicy" in stage["fix"]


async def test_no_greeting_from_a_silent_listener(silent_peer: Peer) -> None:
    peer = silent_peer
    report = await run(config_for(peer.port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.no_greeting")
    assert f"sent no greeting in {SHORT_TIMEOUT_S:g} s" in result.summary
    assert result.finding is not None and "no SMTP greeting" in result.finding.cause
    # The greeting wait, the TLS probe and the sniff all end by one deadline.
    assert result.duration_ms <= (SHORT_TIMEOUT_S + 1) * 1000
    assert peer.connections >= 2  # the stage looked again (TLS, then QUIT) before naming the failure


@pytest.mark.parametrize("mode", ["starttls", "auto"])
async def test_implicit_tls_port_spoken_to_in_plaintext(
    fake_smtp_factory: Callable[..., FakeSMTP], mode: str
) -> None:
    srv = fake_smtp_factory(tls="implicit")
    assert srv.tls_port is not None
    report = await run(config_for(srv.tls_port, tls_mode=mode, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.implicit_tls_expected")
    assert result.facts["implicit_tls_detected"] is True
    assert "answered a TLS handshake" in result.summary
    assert result.finding is not None
    assert f"Port {srv.tls_port} on 127.0.0.1 expects implicit TLS" in result.finding.cause
    assert "implicit TLS" in result.finding.fix
    assert result.duration_ms <= (SHORT_TIMEOUT_S + 1) * 1000


async def test_a_silent_port_fails_within_one_timeout(silent_peer: Peer) -> None:
    """Issue 13: the TLS probe and the HTTP sniff ask while the greeting is still awaited, so the whole
    connect stage ends by one deadline (the bound is the configured timeout plus 10 %, not a measurement)."""
    timeout_s = 2.0
    report = await run(config_for(silent_peer.port, timeout_s=timeout_s))
    result = assert_failed_at(report, "connect", "connect.no_greeting")
    assert f"sent no greeting in {timeout_s:g} s" in result.summary
    assert result.duration_ms <= timeout_s * 1.1 * 1000
    assert silent_peer.connections == 3  # the session, the TLS probe, the QUIT sniff


async def test_an_http_port_is_named_before_the_greeting_timeout(start_peer: Callable[..., Awaitable[Peer]]) -> None:
    """Issue 13: the first answer wins; an HTTP status line ends the wait for a greeting that will not come."""
    timeout_s = 30.0
    peer = await start_peer(http_server)
    report = await run(config_for(peer.port, timeout_s=timeout_s))
    result = assert_failed_at(report, "connect", "connect.not_smtp")
    assert result.facts["banner"].startswith("an HTTP response")
    assert result.facts["attempts"] == {"127.0.0.1": "no_greeting"}
    assert result.duration_ms < timeout_s * 1000


async def test_an_implicit_tls_port_is_named_before_the_greeting_timeout(
    fake_smtp_factory: Callable[..., FakeSMTP],
) -> None:
    """Issue 13: a completed TLS handshake on the second connection ends the wait for a plaintext greeting."""
    timeout_s = 30.0
    srv = fake_smtp_factory(tls="implicit")
    assert srv.tls_port is not None
    report = await run(config_for(srv.tls_port, tls_mode="starttls", timeout_s=timeout_s))
    result = assert_failed_at(report, "connect", "connect.implicit_tls_expected")
    assert "answered a TLS handshake" in result.summary
    assert result.duration_ms < timeout_s * 1000
    assert "completed a TLS handshake" in "\n".join(line.text for line in report.stage("connect").transcript)


def greets_once_asked() -> Behaviour:
    """Greets its first connection only when a second one arrives: a server slow to greet, made exact
    (no clock): its greeting comes while the connect stage is asking the port on other connections. The
    other connections get the silence a slow server gives before its greeting."""
    asked = asyncio.Event()
    seen = 0

    async def behaviour(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        if seen > 1:
            asked.set()
            await hold(reader)
            return
        await asked.wait()
        await greet(reader, writer)
        await answer_plainly(reader, writer)

    return behaviour


async def test_a_greeting_that_comes_while_the_port_is_asked_wins(
    start_peer: Callable[..., Awaitable[Peer]],
) -> None:
    """Issue 13: asking early must not cost a slow server its diagnosis: the late greeting is used, the
    other connections are dropped, and the run carries on over the first one."""
    peer = await start_peer(greets_once_asked())
    report = await run(config_for(peer.port, timeout_s=SHORT_TIMEOUT_S * 4, tls_mode="none"))
    result = report.stage("connect")
    assert result.status is Status.PASSED, (result.summary, result.finding)
    assert result.facts["attempts"] == {"127.0.0.1": "connected"}
    assert report.stage("ehlo").status is Status.PASSED
    assert peer.connections >= 2
    assert await peer.wait_all_closed(5.0)


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
        pass


class _Http11Handler(_QuietHandler):
    default_request_version = "HTTP/1.1"  # error replies get a status line, as nginx's do


@pytest.fixture(params=[_QuietHandler, _Http11Handler], ids=["http0.9-error-page", "http1.1-status-line"])
def http_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A real HTTP server (the standard library's) on loopback."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_not_smtp_http_server(http_port: int) -> None:
    report = await run(config_for(http_port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.not_smtp")
    assert "is not an SMTP server" in result.summary
    assert result.finding is not None
    assert f"The service on 127.0.0.1:{http_port} is not SMTP" in result.finding.cause
    assert "HTTP" in result.finding.cause or "web server" in result.finding.cause
    assert "this port belongs to another service" in result.finding.fix


async def test_not_smtp_ssh_banner(start_peer: Callable[..., Awaitable[Peer]]) -> None:
    peer = await start_peer(says(SSH_BANNER))
    report = await run(config_for(peer.port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.not_smtp")
    assert result.facts["banner"].startswith("an SSH banner")
    assert result.finding is not None and "SSH-2.0-OpenSSH_9.6p1" in result.finding.cause


async def test_garbage_greeting_is_a_protocol_error(start_peer: Callable[..., Awaitable[Peer]]) -> None:
    peer = await start_peer(says(b"hello there, not smtp\r\n"))
    report = await run(config_for(peer.port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.protocol_error")
    assert "\n" not in result.summary and "not an SMTP greeting" in result.summary
    assert result.finding is not None and "hello there, not smtp" in result.finding.cause


@pytest.mark.parametrize(("code", "text"), [(554, "5.3.2 No SMTP service here"), (421, "4.3.2 Service not")])
async def test_greeting_rejected(fake_smtp_factory: Callable[..., FakeSMTP], code: int, text: str) -> None:
    srv = fake_smtp_factory(faults=[parse_fault(f"greeting=reply:{code}")])
    report = await run(config_for(srv.port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.greeting_rejected")
    assert result.facts["greeting_code"] == code
    assert f"greeted with {code}" in result.summary
    assert result.finding is not None
    assert f'"{code} {text}' in result.finding.cause
    assert "421 retry later" in result.finding.fix


async def test_closed_by_server_before_greeting(start_peer: Callable[..., Awaitable[Peer]]) -> None:
    peer = await start_peer(closes_at_once)
    report = await run(config_for(peer.port, timeout_s=SHORT_TIMEOUT_S))
    result = assert_failed_at(report, "connect", "connect.closed_by_server")
    assert "closed the connection before greeting" in result.summary
    assert result.finding is not None and "closed it before greeting" in result.finding.cause


async def test_closed_by_the_fake_server_at_the_greeting(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(faults=[parse_fault("greeting=disconnect")])
    report = await run(config_for(srv.port, timeout_s=SHORT_TIMEOUT_S))
    assert_failed_at(report, "connect", "connect.closed_by_server")


async def test_every_address_is_tried_in_order(
    fake_smtp_factory: Callable[..., FakeSMTP], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name with two A records: the first (127.0.0.2, nothing listens) refuses, the second answers."""
    srv = fake_smtp_factory()
    with DnsResponder({"mail.test.": {"A": ["127.0.0.2", "127.0.0.1"]}}) as dns:
        point_dns_stage_at(dns, monkeypatch)
        config = config_for(srv.port, host="mail.test", dns_servers=("127.0.0.1",), tls_mode="none")
        report = await run(config)
    connect = report.stage("connect")
    assert connect.status is Status.PASSED
    assert connect.facts["attempts"] == {"127.0.0.2": "refused", "127.0.0.1": "connected"}
    assert connect.facts["connected_address"] == "127.0.0.1"
    assert report.verdict == "valid"


async def test_a_passing_connect_reports_the_greeting(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(auth="required", tls="off", username=USER, password=PASSWORD)
    report = await run(config_for(srv.port, username=USER, password=PASSWORD, tls_mode="none"))
    connect = report.stage("connect")
    assert connect.status is Status.PASSED
    assert connect.facts["greeting_code"] == 220
    assert "ESMTP fake-smtp" in connect.facts["greeting"]
    assert connect.summary.startswith(f"Connected to 127.0.0.1:{srv.port}; greeting: 220 ")
