"""Egress policy before any connection, secrets that never leave, and runs cancelled with their client."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from diag.service.app import create_app
from diag.service.settings import ApiToken
from fake_smtp import FakeSMTP
from tests.peer import Peer
from tests.service.helpers import api_client, config_for, make_settings, uvicorn_serving

PASSWORD = "pw-PLANTED-7f3a9c1e-do-not-leak"
TOKEN = "tok-PLANTED-5b2d8e40-do-not-leak"


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket we own; non-blocking, so accept() tells whether anyone ever connected."""
    sock = socket.create_server(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def assert_never_connected(sock: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        sock.accept()


async def test_denied_port_is_422_and_nothing_connects(tmp_path: Path, listener: socket.socket) -> None:
    app = create_app(make_settings(tmp_path, allowed_ports=frozenset({587})))
    async with api_client(app) as client:
        response = await client.post("/api/diagnostics", json=config_for(listener.getsockname()[1]))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "port" and "587" in error["message"]
    assert_never_connected(listener)


async def test_denied_address_literal_is_422(tmp_path: Path, listener: socket.socket) -> None:
    app = create_app(make_settings(tmp_path, deny_networks=("127.0.0.0/8",)))
    async with api_client(app) as client:
        for host in ("127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"):
            response = await client.post("/api/diagnostics", json=config_for(listener.getsockname()[1], host=host))
            assert response.status_code == 422, host
            assert response.json()["errors"][0]["field"] == "host"
        metadata = await client.post("/api/diagnostics", json=config_for(80, host="169.254.169.254"))
        assert metadata.status_code == 422
    assert_never_connected(listener)


async def test_translated_forms_of_denied_addresses_are_422_naming_host(tmp_path: Path) -> None:
    """Local-use NAT64 (RFC 6052 /48 layout), IPv4-translated and Teredo literals are vetted by the IPv4 inside."""
    app = create_app(make_settings(tmp_path, deny_networks=("10.0.0.0/8",), allowed_ports=frozenset({587})))
    cases = {
        "[64:ff9b:1:a9fe:a9:fe00::]": "169.254.169.254",
        "[::ffff:0:10.1.2.3]": "10.1.2.3",
        "[2001:0:4136:e378:8000:63bf:f5fe:fdfc]": "10.1.2.3",  # Teredo: the client's IPv4, inverted
    }
    async with api_client(app) as client:
        for host, embedded in cases.items():
            response = await client.post("/api/diagnostics", json=config_for(587, host=host))
            assert response.status_code == 422, host
            [error] = response.json()["errors"]
            assert error["field"] == "host", host
            assert "egress policy" in error["message"] and f"embeds {embedded}" in error["message"], error
        # The control, without a run (nothing leaves loopback): 203.0.113.5 behind the same prefix on a
        # denied port is refused for the port alone.
        harmless = await client.post("/api/diagnostics", json=config_for(25, host="[64:ff9b:1:cb00:71:500::]"))
        assert harmless.status_code == 422
        assert [e["field"] for e in harmless.json()["errors"]] == ["port"]


async def test_denied_address_behind_a_name_fails_in_dns_without_connecting(
    tmp_path: Path, listener: socket.socket
) -> None:
    app = create_app(make_settings(tmp_path, deny_networks=("127.0.0.0/8", "::1/128")))
    async with api_client(app) as client:
        response = await client.post(
            "/api/diagnostics", json=config_for(listener.getsockname()[1], host="localhost")
        )
    assert response.status_code == 201
    report = response.json()
    assert report["verdict"] == "invalid"
    dns = next(s for s in report["stages"] if s["name"] == "dns")
    assert dns["status"] == "failed" and dns["finding"]["code"] == "dns.policy_denied"
    assert_never_connected(listener)


async def test_password_and_token_never_leave(tmp_path: Path, json_logs: io.StringIO) -> None:
    settings = make_settings(tmp_path, api_token=ApiToken(TOKEN))
    app = create_app(settings)
    auth = {"authorization": f"Bearer {TOKEN}"}
    bodies: list[bytes] = []
    async with FakeSMTP(auth="required", username="demo", password=PASSWORD) as right, \
            FakeSMTP(auth="required", username="demo", password="something-else") as wrong, api_client(app) as client:
        for port in (right.port, wrong.port):
            config = config_for(port, username="demo", password=PASSWORD)
            for accept in ("application/json", "text/event-stream"):
                response = await client.post("/api/diagnostics", json=config, headers={**auth, "accept": accept})
                assert response.status_code == 201
                bodies.append(response.content)
                location = response.headers["location"]
                bodies.append((await client.get(location, headers=auth)).content)
                bodies.append((await client.get(location + "?format=markdown", headers=auth)).content)
        bad = await client.post("/api/diagnostics", json={**config, "password": PASSWORD + "\r\n"}, headers=auth)
        assert bad.status_code == 422
        bodies.append(bad.content)
        bodies.append((await client.get("/api/diagnostics", headers=auth)).content)
        bodies.append((await client.get("/openapi.json")).content)
        bodies.append((await client.get("/")).content)
        denied = await client.get("/api/diagnostics", headers={"authorization": f"Bearer {TOKEN}-wrong"})
        bodies.append(denied.content)
    logs = json_logs.getvalue()
    assert '"run_finished"' in logs and '"request"' in logs  # the logs really were captured
    for line in logs.splitlines():
        assert isinstance(__import__("json").loads(line), dict)  # every line is JSON
    db_bytes = await asyncio.to_thread(lambda: b"".join(p.read_bytes() for p in tmp_path.glob("reports.sqlite3*")))
    assert b"demo" in db_bytes  # the reports are in the file
    for secret in (PASSWORD, TOKEN):
        for body in bodies:
            assert secret.encode() not in body
        assert secret not in logs
        assert secret.encode() not in db_bytes


async def test_client_disconnect_cancels_the_run(tmp_path: Path, silent_peer: Peer) -> None:
    """A real server (httpx's ASGI transport buffers whole responses, so it cannot disconnect mid-stream)."""
    app = create_app(make_settings(tmp_path))
    peer = silent_peer
    async with uvicorn_serving(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            request = client.build_request(
                "POST", "/api/diagnostics", json=config_for(peer.port, timeout_s=60),
                headers={"accept": "text/event-stream"},
            )
            response = await client.send(request, stream=True)
            assert response.status_code == 201
            seen = ""
            async for chunk in response.aiter_text():
                seen += chunk
                if '"name":"connect"' in seen:
                    break
            assert await peer.wait_connections(1, 10)
            await response.aclose()  # the client walks away mid-run
        # The run's connection is closed long before its 60 s greeting timeout, and the slot is free.
        assert await peer.wait_all_closed(10)
    # After the server has drained (the thread joined): the slot is free and no report was stored.
    assert app.state.services.gate.active == 0
    assert app.state.services.store.list() == []


async def test_a_silent_event_stream_sends_keep_alive_pings_and_frees_its_slot_on_close() -> None:
    """A stage may be silent for minutes; proxies cut a silent stream. Through a real uvicorn: pings arrive
    while the source says nothing, and the slot callback runs once the stream ends."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    from diag.service.sse import EventStreamResponse

    release = asyncio.Event()  # set by the test, awaited by the server on the same loop
    closed: list[bool] = []

    async def source() -> Any:
        yield "stage_started", {"stage": "connect"}
        async with asyncio.timeout(10):
            await release.wait()  # the silent stage
        yield "run_finished", {"verdict": "valid"}

    async def endpoint(request: Request) -> EventStreamResponse:
        return EventStreamResponse(source(), on_close=lambda: closed.append(True), ping_interval_s=0.05)

    app = Starlette(routes=[Route("/events", endpoint)])
    async with (
        uvicorn_serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
        client.stream("GET", "/events") as response,
    ):
        seen = ""
        async for chunk in response.aiter_text():
            seen += chunk
            if seen.count(": ping") >= 2:
                release.set()
        assert seen.count(": ping") >= 2
        assert seen.index("stage_started") < seen.index(": ping") < seen.index("run_finished")
    assert closed == [True]
