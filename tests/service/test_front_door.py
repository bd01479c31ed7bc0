"""Slowloris and friends against `smtp-diag serve` as a whole process with few file descriptors: slow request
heads are closed or evicted, probes still get in, and running out of descriptors cannot flood the log."""

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

from diag.service import serve
from diag.service.descriptors import DESCRIPTORS_EXHAUSTED
from diag.service.logs import ACCEPT_ERROR, OncePerInterval
from tests.service.helpers import config_for

HALF_A_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
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
