"""Slowloris and friends against `smtp-diag serve` as a whole process with few file descriptors: slow request
heads are closed or evicted, oversized ones refused, pipelined ones answered in turn, probes still get in,
and running out of descriptors cannot flood the log."""

from __future__ import annotations

import gc
import io
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from diag.service import serve
from diag.service.descriptors import DESCRIPTORS_EXHAUSTED
from diag.service.logs import ACCEPT_ERROR, OncePerInterval
from diag.service.settings import Settings
from tests.service.helpers import config_for

HALF_A_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
HEAD_BOUND = 16 * 1024  # the request line and headers together (diag/service/connections.py)
SECRET = "s3cret-bearer-token"
KEPT_STDERR = 64 * 1024


class ServeProcess:
    """`smtp-diag serve` on a free loopback port with RLIMIT_NOFILE set to `nofile` in the child; its stderr
    is drained by a thread that counts every byte and keeps the first KEPT_STDERR."""

    def __init__(self, tmp_path: Path, env: dict[str, str], nofile: int | tuple[int, int] | None = None) -> None:
        full_env = {**os.environ, "DIAG_DB_PATH": str(tmp_path / "reports.sqlite3"), "DIAG_PORT": "0", **env}
        full_env.pop("DIAG_API_TOKEN", None)

        def low_limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile if isinstance(nofile, tuple) else (nofile, nofile))

        self.process = subprocess.Popen(
            [sys.executable, "-m", "diag", "serve"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=full_env, preexec_fn=low_limit,
        )  # fmt: skip
        self.stderr_bytes = 0
        self.kept = bytearray()
        self.url = ""
        self._url_seen = threading.Event()
        self._exhaustion_seen = threading.Event()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        assert self._url_seen.wait(30), self.stderr_text()
        assert self.url, self.stderr_text()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr_bytes += len(line)
            if len(self.kept) < KEPT_STDERR:
                self.kept += line[: KEPT_STDERR - len(self.kept)]
            if not self.url and b"serving on " in line:
                self.url = line.split(b"serving on ", 1)[1].strip().decode().rstrip("/")
                self._url_seen.set()
            if DESCRIPTORS_EXHAUSTED.encode() in line:
                self._exhaustion_seen.set()
        self._url_seen.set()  # the process ended without the line

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stderr_text(self) -> str:
        return self.kept.decode(errors="replace")

    def wait_for_exhaustion_reported(self, timeout: float) -> bool:
        return self._exhaustion_seen.wait(timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._drainer.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[type[ServeProcess]]:
    started: list[ServeProcess] = []

    class Started(ServeProcess):
        def __init__(self, env: dict[str, str], nofile: int | tuple[int, int] | None = None) -> None:
            super().__init__(tmp_path, env, nofile)
            started.append(self)

    yield Started  # type: ignore[misc]
    for service in started:
        service.stop()


def slow_connections(stack: ExitStack, port: int, count: int) -> int:
    """Opens `count` loopback connections that each send half a request head and wait; returns how many
    connected (all close when `stack` does)."""
    connected = 0
    for _ in range(count):
        sock = stack.enter_context(socket.socket())
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(HALF_A_HEAD)
        except OSError:
            continue
        connected += 1
    return connected


def test_slow_heads_past_the_descriptor_limit_do_not_starve_healthz(start: type[ServeProcess]) -> None:
    """300 slow heads against a process that may open 256 files, with a header timeout too long to help: the
    oldest slow connections are evicted for new ones, and a probe that sends its request at once is served."""
    service = start(
        {"DIAG_MAX_CONNECTIONS": "40", "DIAG_MAX_CONCURRENT_RUNS": "2", "DIAG_HEADER_TIMEOUT_S": "60"}, nofile=256
    )
    with ExitStack() as stack:
        assert slow_connections(stack, service.port, 300) == 300
        with httpx.Client(base_url=service.url, timeout=20) as client:
            response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    service.stop()
    assert service.process.returncode == 0
    assert service.stderr_bytes < 20_000, service.stderr_text()[-2000:]
    assert "Traceback" not in service.stderr_text()


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(start: type[ServeProcess]) -> None:
    service = start({}, nofile=(256, 512))
    assert resource.prlimit(service.process.pid, resource.RLIMIT_NOFILE) == (512, 512)


def test_the_connection_cap_leaves_room_below_the_descriptor_limit(start: type[ServeProcess]) -> None:
    """256 files: 128 for a burst of accepts, 64 + 4 per run (2 runs) for the rest, 56 for connections."""
    service = start({"DIAG_MAX_CONCURRENT_RUNS": "2"}, nofile=256)
    assert "at most 56 connections (DIAG_MAX_CONNECTIONS is 1000)" in service.stderr_text()


def test_a_head_not_finished_in_time_is_closed(start: type[ServeProcess]) -> None:
    service = start({"DIAG_HEADER_TIMEOUT_S": "1"})
    with socket.create_connection(("127.0.0.1", service.port), timeout=20) as sock:
        sock.sendall(HALF_A_HEAD)
        assert sock.recv(1024) == b""  # closed by the service (a hang would raise TimeoutError at 20 s)
    with socket.create_connection(("127.0.0.1", service.port), timeout=20) as sock:
        assert sock.recv(1024) == b""  # nothing sent at all: the same deadline


def test_a_kept_alive_connection_owes_its_next_head_in_time(start: type[ServeProcess]) -> None:
    """The deadline restarts when a response ends; bytes of the next head do not extend it."""
    service = start({"DIAG_HEADER_TIMEOUT_S": "1", "DIAG_KEEP_ALIVE_S": "60"})
    with socket.create_connection(("127.0.0.1", service.port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):
            chunk = sock.recv(4096)
            assert chunk, first
            first += chunk
        assert first.startswith(b"HTTP/1.1 200"), first
        sock.sendall(HALF_A_HEAD)
        assert sock.recv(1024) == b""


def test_when_every_connection_is_busy_a_new_one_gets_503(start: type[ServeProcess]) -> None:
    """Three runs in flight (each waiting for a greeting from a listener that never accepts) hold all three
    connections; a fourth is answered 503 at once, before it sends anything."""
    service = start({"DIAG_MAX_CONNECTIONS": "3", "DIAG_ALLOWED_PORTS": "*"})
    with ExitStack() as stack:
        mute = stack.enter_context(socket.create_server(("127.0.0.1", 0)))  # never accepts: no greeting
        config = config_for(mute.getsockname()[1], timeout_s=30)
        for _ in range(3):
            client = stack.enter_context(httpx.Client(base_url=service.url, timeout=20))
            request = client.build_request("POST", "/api/diagnostics", json=config,
                                           headers={"accept": "text/event-stream"})
            response = client.send(request, stream=True)
            stack.callback(response.close)
            assert response.status_code == 201
        with socket.create_connection(("127.0.0.1", service.port), timeout=20) as sock:
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), answer
    assert json.loads(body)["error"] == "too_many_connections"


def test_serve_runs_on_uvloop(start: type[ServeProcess]) -> None:
    """The line comes from the running loop: a silent fall-back to asyncio's loop fails here."""
    service = start({})
    assert "smtp-diag: event loop uvloop\n" in service.stderr_text()


@pytest.mark.usefixtures("restore_logging")
def test_serve_freezes_start_up_and_collects_the_rest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Start-up's objects are left out of later garbage collections (a full collection's pause on the loop
    halved, docs/performance.md). MOCK: run_server is replaced to look at the collector at the moment serving
    would start; whether a real server starts and serves is what the tests above check."""
    monkeypatch.setenv("DIAG_DB_PATH", str(tmp_path / "reports.sqlite3"))
    when_serving: list[tuple[int, bool]] = []

    def look(*args: object) -> None:
        when_serving.append((gc.get_freeze_count(), gc.isenabled()))

    monkeypatch.setattr(serve, "run_server", look)
    gc.unfreeze()
    gc.disable()  # as the `smtp-diag` command leaves it for its commands (diag/__main__.py)
    try:
        assert serve.main("127.0.0.1", 0, err=io.StringIO()) == 0
    finally:
        gc.unfreeze()  # the test process's objects back to the collector
        gc.enable()
    [(frozen, collecting)] = when_serving
    assert frozen > 0 and collecting, "a long-running service must collect its garbage"


def test_running_out_of_descriptors_is_said_once_per_interval(start: type[ServeProcess]) -> None:
    """The descriptor limit is lowered under the running process to 20 more than it has open (below what its
    connection cap assumed), so accept() really fails with EMFILE. Unfiltered, asyncio logged that failure
    about a hundred times per attempt (megabytes a second); uvloop logs nothing at all. Either way the service
    says it is out of descriptors, once per interval, and serves again when they free up."""
    service = start({})
    with httpx.Client(base_url=service.url, timeout=20) as client:
        assert client.get("/healthz").status_code == 200  # the event loop and the store are open
    pid = service.process.pid
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 20, hard))
    with ExitStack() as stack:
        slow_connections(stack, service.port, 80)
        assert service.wait_for_exhaustion_reported(20), service.stderr_text()[-2000:]
        with httpx.Client(base_url=service.url, timeout=20) as client:
            # Served once the slow connections make room (they close with the stack): the error lines
            # of the whole stall, not just the first, have been through the filter by then.
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
            stack.close()
            assert client.get("/healthz").status_code == 200
    service.stop()
    assert service.stderr_bytes < 20_000, f"{service.stderr_bytes} bytes of stderr"


def test_once_per_interval_counts_what_it_drops() -> None:
    now = [0.0]
    only_once = OncePerInterval(ACCEPT_ERROR, interval_s=10.0, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    assert only_once.filter(record(f"{ACCEPT_ERROR}\nsocket: <...>"))
    assert not any(only_once.filter(record(ACCEPT_ERROR)) for _ in range(1000))
    assert only_once.filter(record("something else"))
    now[0] = 10.0
    passed = record(ACCEPT_ERROR)
    assert only_once.filter(passed)
    assert passed.getMessage() == f"{ACCEPT_ERROR}\n(1000 more like this were not logged)"


def read_until_closed(sock: socket.socket) -> bytes:
    """All the service sends until it closes the connection; a reset after its answer (it closed with bytes
    of ours unread) counts as closed."""
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def read_responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """`count` responses with a content-length, each as (head, body); the socket's timeout bounds the wait.
    Bytes after the last of them are dropped: use it where nothing more is sent."""
    buffered = b""
    while True:
        responses, _ = split_responses(buffered, count)
        if len(responses) == count:
            return responses
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(responses)} responses: {buffered[:300]!r}"
        buffered += chunk


def split_responses(data: bytes, count: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Up to `count` complete responses with a content-length at the start of `data`, and what follows them."""
    responses: list[tuple[bytes, bytes]] = []
    while len(responses) < count:
        head, separator, rest = data.partition(b"\r\n\r\n")
        if not separator:
            break
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))  # fmt: skip
        if len(rest) < length:
            break
        responses.append((head, rest[:length]))
        data = rest[length:]
    return responses, data


def head_of(size: int, target: bytes = b"/healthz", *, end: bool = True, keep_alive: bool = False) -> bytes:
    """A GET of about `size` bytes of request line and headers: padded with 1 KiB headers, a bearer token
    among them (which must never be logged)."""
    head = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\n"
    if not keep_alive:
        head += b"Connection: close\r\n"
    index = 0
    while len(head) + 2 < size:
        pad = min(1024, size - len(head) - 2 - len(f"X-Pad-{index}: \r\n"))
        head += f"X-Pad-{index}: ".encode() + b"p" * max(pad, 0) + b"\r\n"
        index += 1
    return head + b"\r\n" if end else head


def run_request(port: int, timeout_s: float) -> bytes:
    """A synchronous diagnostic run (JSON answer, no event stream) against a port that never greets."""
    body = json.dumps(config_for(port, timeout_s=timeout_s)).encode()
    return (b"POST /api/diagnostics HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(head_of(20 * 1024), id="one-send-of-20KiB-headers"),
        pytest.param(b"GET /healthz?pad=" + b"u" * 20 * 1024 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", id="20KiB-url"),
        pytest.param(head_of(8 * 1024, end=False) + b"X-Big: " + b"v" * 12 * 1024, id="unfinished-20KiB-header"),
    ],
)
def test_a_head_over_the_bound_gets_431_and_is_closed(start: type[ServeProcess], head: bytes) -> None:
    """Whether the head arrived whole or is still coming, the client is told why in JSON, then closed; the
    log says it happened without the head's token."""
    service = start({"DIAG_HEADER_TIMEOUT_S": "60"})  # the deadline must not be what closes it
    with socket.create_connection(("127.0.0.1", service.port), timeout=20) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock)  # a hang would raise TimeoutError at 20 s
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:300]
    assert json.loads(body) == {
        "error": "request_head_too_large",
        "message": f"The request line and headers may take at most {HEAD_BOUND} bytes together.",
    }
    service.stop()
    assert "answered 431" in service.stderr_text()
    assert SECRET not in service.stderr_text()


def read_by_the_service(probe: socket.socket) -> None:
    """Returns once the service has read what was sent before on any of its connections: a /healthz round
    trip on a kept-alive connection of its own. Loopback delivers those bytes before the probe's, and the
    service reads every ready connection on one event loop before it answers the probe in a later turn."""
    probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    [(status, _)] = read_responses(probe, 1)
    assert status.startswith(b"HTTP/1.1 200"), status


def send_in_reads(sock: socket.socket, probe: socket.socket, data: bytes, segment: int) -> None:
    """`data` in segments of `segment` bytes, each read by the service on its own."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Nagle would hold a segment for an ACK
    for offset in range(0, len(data), segment):
        sock.sendall(data[offset:offset + segment])
        read_by_the_service(probe)


def test_a_head_just_under_the_bound_is_served(start: type[ServeProcess]) -> None:
    head = head_of(HEAD_BOUND - 256)
    assert len(head) == HEAD_BOUND - 256
    service = start({})
    with socket.create_connection(("127.0.0.1", service.port), timeout=20) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert answer.endswith(b'{"status":"ok"}')


def test_a_head_just_under_the_bound_read_in_many_pieces_is_served(start: type[ServeProcess]) -> None:
    """63 reads of 256 bytes: the count of an unfinished head adds them up, and stays under the bound."""
    head = head_of(HEAD_BOUND - 256)
    service = start({})
    with ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", service.port), timeout=20))
        probe = stack.enter_context(socket.create_connection(("127.0.0.1", service.port), timeout=20))
        send_in_reads(sock, probe, head, 256)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert answer.endswith(b'{"status":"ok"}')


def test_the_head_count_starts_again_with_each_request(start: type[ServeProcess]) -> None:
    """Two heads of 10 KiB on one kept-alive connection, each read in 1 KiB pieces: 20 KiB in all, but no
    single head over the bound, so both are served."""
    service = start({})
    with ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", service.port), timeout=20))
        probe = stack.enter_context(socket.create_connection(("127.0.0.1", service.port), timeout=20))
        for _ in range(2):
            send_in_reads(sock, probe, head_of(10 * 1024, keep_alive=True), 1024)
            [(status, body)] = read_responses(sock, 1)
            assert status.startswith(b"HTTP/1.1 200") and body == b'{"status":"ok"}', status


def test_a_small_head_with_a_large_body_in_one_send_is_not_a_head_too_large(start: type[ServeProcess]) -> None:
    """The head completes within the read that also carries 30 KiB of body: only the head counts, and the
    body reaches the app, which names the field it does not know."""
    service = start({})
    body = json.dumps({**config_for(25), "notes": "n" * 30 * 1024}).encode()
    request = (b"POST /api/diagnostics HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
               b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
    with socket.create_connection(("127.0.0.1", service.port), timeout=20) as sock:
        sock.sendall(request)
        answer = read_until_closed(sock)
    status, _, answer_body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 422"), answer[:300]
    assert [error["field"] for error in json.loads(answer_body)["errors"]] == ["notes"]


def test_pipelined_requests_are_answered_in_turn_past_the_header_deadline(start: type[ServeProcess]) -> None:
    """Two runs of 2 s each (a port that never greets) pipelined in one send, with a 1 s header deadline:
    the second head waits its turn behind the first run, then runs; neither wait is a head owed, so the
    deadline closes nothing and both answers come."""
    service = start({"DIAG_HEADER_TIMEOUT_S": "1", "DIAG_KEEP_ALIVE_S": "60", "DIAG_ALLOWED_PORTS": "*"})
    with ExitStack() as stack:
        mute = stack.enter_context(socket.create_server(("127.0.0.1", 0)))  # never accepts: no greeting
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", service.port), timeout=30))
        sock.sendall(run_request(mute.getsockname()[1], 2.0) * 2)
        answers = read_responses(sock, 2)
    for status, body in answers:
        assert status.startswith(b"HTTP/1.1 201"), (status, body[:300])
        assert json.loads(body)["id"]
    assert answers[0][1] != answers[1][1]


def test_an_oversized_head_pipelined_behind_a_run_gets_its_431_after_the_run(start: type[ServeProcess]) -> None:
    """A head still coming grows past the bound while the run before it is answered: the service stops
    reading, sends the run's whole answer, then the 431, and closes."""
    service = start({"DIAG_HEADER_TIMEOUT_S": "60", "DIAG_ALLOWED_PORTS": "*"})
    with ExitStack() as stack:
        mute = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", service.port), timeout=30))
        sock.sendall(run_request(mute.getsockname()[1], 2.0) + head_of(20 * 1024, end=False))
        # Both answers, however the service's writes were split or merged into reads (read_responses would
        # drop a 431 that came in the same read as the end of the 201).
        everything = read_until_closed(sock)
    [(status, body)], rest = split_responses(everything, 1)
    assert status.startswith(b"HTTP/1.1 201"), (status, body[:300])
    assert rest.startswith(b"HTTP/1.1 431 "), rest[:300]
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "request_head_too_large"


def test_serve_uses_the_httptools_protocol() -> None:
    """The class uvicorn builds for each connection, as `serve` configures it (uvicorn_config is what
    serve.main runs): httptools' C parser, under the guard."""

    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not served")

    config = serve.uvicorn_config(app, Settings(), max_connections=10)
    config.load()
    assert issubclass(config.http_protocol_class, HttpToolsProtocol)
    assert config.http_protocol_class.guard.max_connections == 10  # type: ignore[attr-defined]
