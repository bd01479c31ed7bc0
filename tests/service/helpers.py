"""Shared by the service tests: apps on temporary stores, a real uvicorn in a thread."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from diag.service.hosts import LOOPBACK_HOSTS
from diag.service.limits import GateEntry, RunGate
from diag.service.settings import Rate, Settings

GENEROUS = Rate(10_000, 60.0)


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    base = Settings(
        db_path=tmp_path / "reports.sqlite3",
        allowed_ports=None,
        rate_limit_per_client=GENEROUS,
        rate_limit_per_target=GENEROUS,
        # httpx's ASGITransport sends Host: testserver; the real default (loopback names) stays untouched.
        allowed_hosts=(*LOOPBACK_HOSTS, "testserver"),
    )
    return dataclasses.replace(base, **changes)


@asynccontextmanager
async def api_client(app: Starlette, client_ip: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def config_for(port: int, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "from_email": "app@example.test", "tls_mode": "none", **extra}


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    import json

    events: list[tuple[str, dict[str, Any]]] = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        name = next(line[6:].strip() for line in frame.splitlines() if line.startswith("event:"))
        data = "".join(line[5:].strip() for line in frame.splitlines() if line.startswith("data:"))
        events.append((name, json.loads(data)))
    return events


def _uvicorn(app: Starlette) -> tuple[uvicorn.Server, socket.socket, str]:
    """A real HTTP server and its socket, listening before the server starts: clients can connect at once."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    return server, sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def uvicorn_in_thread(app: Starlette) -> Iterator[str]:
    """A real HTTP server in a thread of its own, for tests that block (the browser tests)."""
    server, sock, url = _uvicorn(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@asynccontextmanager
async def uvicorn_serving(app: Starlette) -> AsyncIterator[str]:
    """A real HTTP server on the async test's own loop: nothing waits on a thread, and the test's peers
    and the server share one loop."""
    server, sock, url = _uvicorn(app)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield url
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await serving
        sock.close()



class WatchedGate(RunGate):
    """The service's RunGate, telling a test when its state has changed: that a request has taken a place
    in the queue, or left it, is the one thing no peer and no response shows. Every change happens in
    `enter` (which starts with `try_enter`, then joins the queue without yielding), or in `leave`; each of
    them schedules a wake-up that runs once the change is complete."""

    def __init__(self, limit: int, per_client: int | None = None, *, max_queued: int = 0,
                 queue_wait_s: float = 0.0) -> None:
        super().__init__(limit, per_client, max_queued=max_queued, queue_wait_s=queue_wait_s)
        self._changed = asyncio.Event()

    @classmethod
    def watching(cls, app: Starlette) -> WatchedGate:
        """Put in place of `app`'s gate, with its settings (before any request)."""
        services = app.state.services
        gate = services.gate
        watched = cls(gate.limit, gate.per_client, max_queued=gate.max_queued, queue_wait_s=gate.queue_wait_s)
        services.gate = watched
        return watched

    def try_enter(self, client: str = "") -> str | None:
        self._wake_soon()
        return super().try_enter(client)

    async def enter(self, client: str = "") -> GateEntry:
        try:
            return await super().enter(client)
        finally:
            self._wake_soon()

    def leave(self, client: str = "") -> None:
        self._wake_soon()
        super().leave(client)

    async def until(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Until `condition()` holds, checked after each change; fails the test after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    def _wake_soon(self) -> None:
        asyncio.get_running_loop().call_soon(self._changed.set)
