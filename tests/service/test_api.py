"""The API against real runs: FakeSMTP peers on loopback, the app over httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from diag.config import TEXT_FIELDS
from diag.service.app import create_app
from diag.service.settings import ApiToken, Rate
from fake_smtp import FakeSMTP
from tests.peer import Peer, never_greets
from tests.service.helpers import (
    WatchedGate,
    api_client,
    config_for,
    make_settings,
    parse_sse,
    uvicorn_serving,
)


@pytest.fixture
def smtp() -> Any:
    with FakeSMTP() as server:
        yield server


async def test_create_returns_the_stored_report(tmp_path: Path, smtp: FakeSMTP) -> None:
    app = create_app(make_settings(tmp_path))
    async with api_client(app) as client:
        response = await client.post("/api/diagnostics", json=config_for(smtp.port))
        assert response.status_code == 201
        body = response.json()
        assert body["verdict"] == "valid"
        assert [s["name"] for s in body["stages"]][:3] == ["config", "dns", "connect"]
        assert response.headers["location"] == f"/api/diagnostics/{body['id']}"
        stored = await client.get(response.headers["location"])
        assert stored.status_code == 200 and stored.json() == body


async def test_the_report_is_turned_into_json_off_the_event_loop(
    tmp_path: Path, smtp: FakeSMTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 (event-loop lag): the answer's body, the report as a dict and as JSON, is built in the worker
    thread that saves it, not on the loop that every run in flight shares. A spy on Report.to_dict records
    whether it ran on the loop's thread: no peer can observe which thread built a body."""
    from diag.report import Report

    on_loop: list[bool] = []
    to_dict = Report.to_dict

    def spying(report: Report) -> dict[str, Any]:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return to_dict(report)

    monkeypatch.setattr(Report, "to_dict", spying)
    app = create_app(make_settings(tmp_path))
    async with api_client(app) as client:
        response = await client.post("/api/diagnostics", json=config_for(smtp.port))
    assert response.status_code == 201 and response.json()["verdict"] == "valid"
    assert response.headers["location"] == f"/api/diagnostics/{response.json()['id']}"
    assert on_loop and not any(on_loop)


async def test_list_newest_first_with_filters(tmp_path: Path, smtp: FakeSMTP) -> None:
    app = create_app(make_settings(tmp_path))
    async with api_client(app) as client:
        good = (await client.post("/api/diagnostics", json=config_for(smtp.port))).json()
        # Nothing listens on port 1 of loopback: the connect stage fails.
        bad = (await client.post("/api/diagnostics", json=config_for(1, timeout_s=2))).json()
        assert bad["verdict"] == "invalid"
        items = (await client.get("/api/diagnostics")).json()["items"]
        assert [i["id"] for i in items] == [bad["id"], good["id"]]
        assert items[0]["failed_stage"] == "connect" and items[0]["finding_code"].startswith("connect.")
        assert set(items[0]) == {"id", "started_at", "host", "port", "verdict", "failed_stage", "finding_code",
                                 "duration_ms"}
        valid = (await client.get("/api/diagnostics", params={"verdict": "valid"})).json()["items"]
        assert [i["id"] for i in valid] == [good["id"]]
        assert (await client.get("/api/diagnostics", params={"host": "elsewhere.test"})).json()["items"] == []
        one = (await client.get("/api/diagnostics", params={"limit": "1"})).json()["items"]
        assert [i["id"] for i in one] == [bad["id"]]
        for params in ({"verdict": "maybe"}, {"limit": "0"}, {"limit": "many"}):
            response = await client.get("/api/diagnostics", params=params)
            assert response.status_code == 422
            assert response.json()["errors"][0]["field"] == next(iter(params))


async def test_markdown_by_accept_or_query(tmp_path: Path, smtp: FakeSMTP) -> None:
    app = create_app(make_settings(tmp_path))
    async with api_client(app) as client:
        report = (await client.post("/api/diagnostics", json=config_for(smtp.port))).json()
        url = f"/api/diagnostics/{report['id']}"
        by_accept = await client.get(url, headers={"accept": "text/markdown"})
        by_query = await client.get(url, params={"format": "markdown"})
        for response in (by_accept, by_query):
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/markdown")
            assert "127.0.0.1" in response.text and report["id"] in response.text
        assert (await client.get(url, params={"format": "pdf"})).status_code == 422


async def test_event_stream_order_and_content(tmp_path: Path, smtp: FakeSMTP) -> None:
    app = create_app(make_settings(tmp_path))
    async with api_client(app) as client:
        response = await client.post(
            "/api/diagnostics", json=config_for(smtp.port), headers={"accept": "text/event-stream"}
        )
        assert response.status_code == 201
        assert response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(response.text)
        names = [name for name, _ in events]
        stages = [data["name"] for name, data in events if name == "stage_started"]
        assert names == ["stage_started", "stage_finished"] * len(stages) + ["run_finished"]
        for started, finished in zip(events[0:-1:2], events[1:-1:2], strict=True):
            assert started[1]["name"] == finished[1]["name"]
            assert {"status", "duration_ms", "summary", "facts", "finding", "transcript"} <= set(finished[1])
        report = events[-1][1]
        assert [s["name"] for s in report["stages"]] == stages
        assert response.headers["location"] == f"/api/diagnostics/{report['id']}"
        stored = await client.get(response.headers["location"])
        assert stored.json() == report  # stored before the last event went out


async def test_unknown_id_is_a_json_404(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        for path in ("/api/diagnostics/0123456789abcdef", "/api/diagnostics/..%2F..%2Fetc", "/api/nothing"):
            response = await client.get(path)
            assert response.status_code == 404
            assert response.json()["error"] == "not_found"


async def test_malformed_json_and_non_objects_are_400(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        headers = {"content-type": "application/json"}
        for body in (b"{", b"\xff\xfe{", b"[1, 2]", b'"text"', b"null", b"", b"[" * 5000 + b"]" * 5000):
            response = await client.post("/api/diagnostics", content=body, headers=headers)
            assert response.status_code == 400, body[:20]
            assert response.json()["error"] == "malformed_json"


async def test_body_limit_from_header_and_from_streamed_bytes(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        big = json.dumps({"host": "x" * 70_000}).encode()
        response = await client.post("/api/diagnostics", content=big, headers={"content-type": "application/json"})
        assert response.status_code == 413

        async def chunks() -> Any:  # no Content-Length: the size is counted as bytes arrive
            for _ in range(80):
                yield b" " * 1024

        response = await client.post("/api/diagnostics", content=chunks(), headers={"content-type": "application/json"})
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"


async def test_non_json_content_type_is_415(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": content_type} if content_type else {}
            response = await client.post("/api/diagnostics", content=b"{}", headers=headers)
            assert response.status_code == 415
        json_utf8 = {"content-type": "application/json; charset=utf-8"}
        ok = await client.post("/api/diagnostics", content=b"{}", headers=json_utf8)
        assert ok.status_code == 422  # past the content type: the schema speaks


async def test_schema_errors_are_422_with_fields(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        response = await client.post("/api/diagnostics", json={"port": "abc", "tls_mode": "ssl", "extra": 1})
        assert response.status_code == 422
        fields = {e["field"] for e in response.json()["errors"]}
        assert fields == {"host", "from_email", "port", "tls_mode", "extra"}


@pytest.mark.parametrize("field", [f for f in TEXT_FIELDS if f != "ca_bundle"])
@pytest.mark.parametrize("bad", ["\r", "\n", "\x00"])
async def test_cr_lf_nul_in_each_field_is_422(tmp_path: Path, field: str, bad: str) -> None:
    config = config_for(2525, username="u", password="p", recipient="r@example.test", helo_name="me.test")
    config[field] = f"value{bad}RCPT TO:<victim@example.test>"
    async with api_client(create_app(make_settings(tmp_path))) as client:
        response = await client.post("/api/diagnostics", json=config)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_unforeseen_values_are_still_4xx(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        for port in ("\u00b2", 1e308, -1, [], {}, True, "65536"):
            response = await client.post("/api/diagnostics", json={**config_for(2525), "port": port})
            assert response.status_code == 422, port


async def test_nul_in_ca_bundle_is_422(tmp_path: Path) -> None:
    config = config_for(2525, ca_bundle="-----BEGIN CERTIFICATE-----\x00")
    async with api_client(create_app(make_settings(tmp_path))) as client:
        response = await client.post("/api/diagnostics", json=config)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "ca_bundle"


async def test_token_guards_every_api_route(tmp_path: Path, smtp: FakeSMTP) -> None:
    token = "tok-0123456789abcdef-XYZ"
    app = create_app(make_settings(tmp_path, api_token=ApiToken(token)))
    async with api_client(app) as client:
        for method, path in (("POST", "/api/diagnostics"), ("GET", "/api/diagnostics"), ("GET", "/api/diagnostics/x")):
            for auth in (None, "Bearer wrong-token", f"Basic {token}", f"Bearer {token}x", "Bearer"):
                headers = {"authorization": auth} if auth else {}
                response = await client.request(method, path, json=config_for(smtp.port), headers=headers)
                assert response.status_code == 401, (method, path, auth)
                assert response.json()["error"] == "unauthorized"
                assert response.headers["www-authenticate"].startswith("Bearer")
        ok = await client.post("/api/diagnostics", json=config_for(smtp.port),
                               headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 201
        # The page, health and the API description stay open.
        for path in ("/", "/healthz", "/readyz", "/openapi.json"):
            assert (await client.get(path)).status_code == 200


async def test_rate_limit_per_client(tmp_path: Path, smtp: FakeSMTP) -> None:
    app = create_app(make_settings(tmp_path, rate_limit_per_client=Rate(2, 60.0)))
    async with api_client(app, client_ip="10.0.0.1") as first, api_client(app, client_ip="10.0.0.2") as second:
        statuses = [(await first.post("/api/diagnostics", json=config_for(smtp.port))).status_code for _ in range(3)]
        assert statuses == [201, 201, 429]
        limited = await first.post("/api/diagnostics", json=config_for(smtp.port))
        assert limited.json()["error"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 30
        assert (await second.post("/api/diagnostics", json=config_for(smtp.port))).status_code == 201


async def test_rate_limit_per_target_whatever_the_spelling(tmp_path: Path, smtp: FakeSMTP) -> None:
    """Password spraying through us: many clients, one target, is limited by the target's bucket."""
    app = create_app(make_settings(tmp_path, rate_limit_per_target=Rate(2, 60.0)))
    spellings = ["127.0.0.1", "127.1", "0x7f000001"]
    statuses = []
    for n, host in enumerate(spellings):
        async with api_client(app, client_ip=f"10.0.0.{n + 1}") as client:
            response = await client.post(
                "/api/diagnostics", json=config_for(smtp.port, host=host, username="u", password=f"guess{n}")
            )
            statuses.append(response.status_code)
    assert statuses == [201, 201, 429]
    assert int(response.headers["retry-after"]) >= 1


async def test_without_a_queue_a_busy_service_answers_503_at_once(tmp_path: Path) -> None:
    """DIAG_MAX_QUEUED_RUNS=0: past the cap, a 503 at once, as before there was a queue."""
    app = create_app(make_settings(tmp_path, max_concurrent_runs=1, max_queued_runs=0))
    async with api_client(app) as client:
        async with Peer(never_greets) as peer:
            first = await hold_the_only_slot(client, peer)
            busy = await client.post("/api/diagnostics", json=config_for(peer.port))
            assert_busy(busy)
            assert not first.done() and peer.connections == 1  # answered while the slot was still held
        # Leaving the peer's context hangs up: the first run ends.
        assert (await first).status_code == 201
        assert app.state.services.gate.active == 0


def report_of(response: Any, accept: str) -> dict[str, Any]:
    """The report a 201 carries: the JSON body, or the event stream's last event."""
    assert response.status_code == 201, response.text
    if accept == "text/event-stream":
        name, report = parse_sse(response.text)[-1]
        assert name == "run_finished"
        return report
    return dict(response.json())


def assert_busy(response: httpx.Response) -> None:
    """The service's answer when no run slot is to be had: 503 busy, and when to try again."""
    assert response.status_code == 503
    assert response.json()["error"] == "busy" and int(response.headers["retry-after"]) >= 1


async def hold_the_only_slot(client: httpx.AsyncClient, peer: Peer) -> asyncio.Task[httpx.Response]:
    """A run against `peer` (which never greets), once it holds the run slot: its SMTP connection is open.
    It ends, answering 201, when the peer hangs up."""
    first = asyncio.create_task(client.post("/api/diagnostics", json=config_for(peer.port, timeout_s=20)))
    assert await peer.wait_connections(1, 10)
    return first


async def queued_request(client: httpx.AsyncClient, gate: WatchedGate, port: int,
                         accept: str = "application/json") -> asyncio.Task[httpx.Response]:
    """A diagnosis of the FakeSMTP on `port`, once it waits in the gate's queue (behind those already there)."""
    ahead = gate.waiting
    request = asyncio.create_task(client.post("/api/diagnostics", json=config_for(port), headers={"accept": accept}))
    await gate.until(lambda: gate.waiting == ahead + 1)
    return request


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_at_the_cap_a_request_waits_for_a_slot_and_its_run_starts_then(
    tmp_path: Path, smtp: FakeSMTP, accept: str
) -> None:
    """Cap 1 with a queue: the second request waits while the first run hangs, then runs and answers 201
    with a valid report. Its run starts when it gets the slot: its report's start is after the first run
    was let go, so no stage timing holds the wait."""
    app = create_app(make_settings(tmp_path, max_concurrent_runs=1, max_queued_runs=4, run_queue_wait_s=60.0))
    gate = WatchedGate.watching(app)
    async with api_client(app) as client:
        with structlog.testing.capture_logs() as logs:
            async with Peer(never_greets) as peer:
                first = await hold_the_only_slot(client, peer)
                second = await queued_request(client, gate, smtp.port, accept)
                assert not second.done() and not first.done()
                now = datetime.now(UTC)
                let_go = now.replace(microsecond=now.microsecond // 1000 * 1000)  # reports keep milliseconds
            # Leaving the peer's context hangs up: the first run ends, and its slot goes to the second.
            assert (await first).status_code == 201
            report = report_of(await second, accept)
    assert report["verdict"] == "valid"
    assert datetime.fromisoformat(report["started_at"]) >= let_go
    queued = [e for e in logs if e["event"] == "run_queued"]
    assert len(queued) == 1 and queued[0]["log_level"] == "info" and queued[0]["waited_ms"] >= 0
    assert gate.active == 0 and gate.waiting == 0


async def test_a_full_queue_answers_503_at_once(tmp_path: Path, smtp: FakeSMTP) -> None:
    app = create_app(make_settings(tmp_path, max_concurrent_runs=1, max_queued_runs=1, run_queue_wait_s=60.0))
    gate = WatchedGate.watching(app)
    async with api_client(app) as client:
        async with Peer(never_greets) as peer:
            first = await hold_the_only_slot(client, peer)
            second = await queued_request(client, gate, smtp.port)
            busy = await client.post("/api/diagnostics", json=config_for(smtp.port))
            assert_busy(busy)
            assert not first.done() and not second.done()  # answered while the slot was held
        assert (await first).status_code == 201
        assert (await second).status_code == 201
    assert gate.active == 0 and gate.waiting == 0


async def test_a_wait_that_runs_out_answers_503(tmp_path: Path, smtp: FakeSMTP) -> None:
    """The request that waited and gave up never ran and spent none of the client's budget (2 a minute:
    the first run took one, so one more run is allowed after it)."""
    app = create_app(make_settings(tmp_path, max_concurrent_runs=1, max_queued_runs=4, run_queue_wait_s=1.0,
                                   rate_limit_per_client=Rate(2, 60.0)))
    gate = WatchedGate.watching(app)
    async with api_client(app) as client:
        with structlog.testing.capture_logs() as logs:
            async with Peer(never_greets) as peer:
                first = await hold_the_only_slot(client, peer)
                busy = await client.post("/api/diagnostics", json=config_for(smtp.port))
                assert_busy(busy)
                assert not first.done() and gate.waiting == 0  # gave up while the slot was held
            assert (await first).status_code == 201
        listed = (await client.get("/api/diagnostics")).json()["items"]
        assert [item["port"] for item in listed] == [peer.port]  # the request that gave up never ran
        budget = [(await client.post("/api/diagnostics", json=config_for(smtp.port))).status_code for _ in range(2)]
    assert budget == [201, 429]
    assert [e["event"] for e in logs if e["event"].startswith("run_queue")] == ["run_queue_timeout"]
    assert gate.active == 0



async def test_a_request_whose_budget_ran_out_while_it_waited_gets_429_and_gives_its_slot_back(
    tmp_path: Path, smtp: FakeSMTP
) -> None:
    """Two runs a minute: the first run takes one, and two more requests queue while it holds the only slot
    (each passed the rate check when it came). The first of them to get the slot takes the last token and
    runs; the other is checked again when its slot comes, answered 429, and the slot goes back."""
    app = create_app(make_settings(tmp_path, max_concurrent_runs=1, max_queued_runs=4, run_queue_wait_s=60.0,
                                   rate_limit_per_client=Rate(2, 60.0)))
    gate = WatchedGate.watching(app)
    async with api_client(app) as client:
        async with Peer(never_greets) as peer:
            first = await hold_the_only_slot(client, peer)
            second = await queued_request(client, gate, smtp.port)
            third = await queued_request(client, gate, smtp.port)
        assert (await first).status_code == 201
        assert (await second).status_code == 201
        late = await third
    assert late.status_code == 429 and late.json()["error"] == "rate_limited"
    assert gate.active == 0 and gate.waiting == 0

@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_a_client_that_leaves_while_queued_is_dropped_and_never_runs(
    tmp_path: Path, smtp: FakeSMTP, accept: str
) -> None:
    """Through a real uvicorn: the queued client hangs up; it leaves the queue at once (long before its
    60 s wait), and when the slot frees nothing runs for it."""
    app = create_app(make_settings(tmp_path, max_concurrent_runs=1, max_queued_runs=4, run_queue_wait_s=60.0))
    gate = WatchedGate.watching(app)
    async with uvicorn_serving(app) as url, httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        async with Peer(never_greets) as peer:
            first = await hold_the_only_slot(client, peer)
            async with httpx.AsyncClient(base_url=url, timeout=60.0) as leaving:
                queued = await queued_request(leaving, gate, smtp.port, accept)
                queued.cancel()  # the client hangs up: httpx closes its connection
                await asyncio.gather(queued, return_exceptions=True)
            await gate.until(lambda: gate.waiting == 0 and gate.running("127.0.0.1") == 1)
            assert not first.done()  # dropped from the queue while the slot was still held
        # Leaving the peer's context hangs up: the first run ends, and its slot goes to nobody.
        assert (await first).status_code == 201
        listed = (await client.get("/api/diagnostics")).json()["items"]
    assert [item["port"] for item in listed] == [peer.port]  # nothing ran for the client that left
    assert gate.active == 0 and gate.waiting == 0


async def test_request_id_is_echoed_or_made(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        given = await client.get("/healthz", headers={"x-request-id": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        odd = await client.get("/healthz", headers={"x-request-id": "bad id\twith spaces"})
        assert len(odd.headers["x-request-id"]) == 32
        assert (await client.get("/healthz")).headers["x-request-id"] != odd.headers["x-request-id"]


async def test_health_and_readiness(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200
    broken = create_app(make_settings(tmp_path, db_path=tmp_path))  # a directory: the store cannot open
    async with api_client(broken) as client:
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200


async def test_every_input_problem_at_once_each_under_its_field(tmp_path: Path, smtp: FakeSMTP) -> None:
    """A schema error (port), unusable values (host with a scheme, From without @, a username without a
    password) and a denied port's partner problems come back together, before any run and any connection."""
    body = {"host": "smtp://mail.example.com", "port": 70000, "from_email": "not-an-email", "username": "u"}
    async with api_client(create_app(make_settings(tmp_path))) as client:
        response = await client.post("/api/diagnostics", json=body)
        listed = (await client.get("/api/diagnostics")).json()["items"]
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert sorted(fields) == ["from_email", "host", "port", "username"]
    assert listed == []  # nothing ran, nothing was stored


async def test_a_denied_port_names_the_allowed_ports_and_the_setting(tmp_path: Path, smtp: FakeSMTP) -> None:
    settings = make_settings(tmp_path, allowed_ports=frozenset({25, 587}))
    async with api_client(create_app(settings)) as client:
        response = await client.post("/api/diagnostics", json=config_for(smtp.port))
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "port"
    assert "(25, 587)" in error["message"] and "DIAG_ALLOWED_PORTS" in error["message"]


async def test_a_palette_run_carries_the_product_log_line_to_the_api_and_the_stored_page(tmp_path: Path) -> None:
    """A palette config through the API: the failed stage says what the product's Go client would log, and
    the stored report's page (without JavaScript) shows it too. Nothing listens on port 1 of loopback."""
    app = create_app(make_settings(tmp_path))
    async with api_client(app) as client:
        response = await client.post("/api/diagnostics", json=config_for(1, profile="palette", tls_mode=None))
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["config"]["profile"] == "palette"
        connect = next(s for s in body["stages"] if s["name"] == "connect")
        assert connect["product_log"] == "dial tcp 127.0.0.1:1: connect: connection refused"
        page = await client.get(f"/diagnostics/{body['id']}")
        assert "dial tcp 127.0.0.1:1: connect: connection refused" in page.text
        refused = await client.post("/api/diagnostics", json=config_for(1, profile="palette", tls_mode="none"))
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "tls_mode"
