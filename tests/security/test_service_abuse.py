"""The service used as a weapon (issue 8): an open relay, DNS queries into the operator's network, password
spraying under many spellings, one client holding every slot, budgets spent by requests we refuse.

Everything runs against real peers on loopback: FakeSMTP (which captures what is sent), scripted hostile
peers, the app over httpx's ASGI transport, and a real uvicorn where a client must really hang up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from diag.service.app import create_app
from diag.service.settings import Rate, Settings
from fake_smtp import FakeSMTP
from tests.peer import Peer, Reader, SmtpScript, Writer, ehlo_then, hold
from tests.service.helpers import api_client, config_for, make_settings, uvicorn_serving

RECIPIENT = "ops@example.test"


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return make_settings(tmp_path, **changes)


def stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["name"] == name)


def fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    return {e["field"] for e in response.json()["errors"]}


# -- 1. not an open relay -----------------------------------------------------------------------------------


async def test_sending_is_refused_unless_the_operator_enables_it(tmp_path: Path, fake_smtp: FakeSMTP) -> None:
    async with api_client(create_app(settings_for(tmp_path))) as client:
        response = await client.post(
            "/api/diagnostics", json=config_for(fake_smtp.port, recipient=RECIPIENT, send_test_message=True)
        )
        assert fields(response) == {"send_test_message"}
        assert "DIAG_ALLOW_SEND" in response.json()["errors"][0]["message"]
        # Checking the recipient without sending stays possible.
        checked = await client.post("/api/diagnostics", json=config_for(fake_smtp.port, recipient=RECIPIENT))
        assert checked.status_code == 201 and stage(checked.json(), "rcpt_to")["status"] == "passed"
    assert fake_smtp.messages == []


async def test_the_message_is_our_fixed_text_with_only_the_run_id(tmp_path: Path, fake_smtp: FakeSMTP) -> None:
    """Nothing a user typed reaches the body: the host name used to be quoted there."""
    async with api_client(create_app(settings_for(tmp_path, allow_send=True))) as client:
        response = await client.post(
            "/api/diagnostics",
            json=config_for(fake_smtp.port, host="localhost", recipient=RECIPIENT, send_test_message=True),
        )
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["verdict"] == "valid"
    [message] = fake_smtp.messages
    assert message.rcpt_tos == [RECIPIENT]
    parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_content().replace("\r\n", "\n")
    assert body == (
        f"This is a test message sent by smtp-diag (run {report['id']}) to check an SMTP configuration.\n"
        "If you received it, that configuration can send mail. No reply is needed.\n"
    )
    assert parsed["Subject"] == "smtp-diag test message"


async def test_a_list_of_recipients_sends_nothing(tmp_path: Path, fake_smtp: FakeSMTP) -> None:
    async with api_client(create_app(settings_for(tmp_path, allow_send=True))) as client:
        response = await client.post(
            "/api/diagnostics",
            json=config_for(fake_smtp.port, recipient="a@example.test, b@example.test", send_test_message=True),
        )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["recipient"]
    assert fake_smtp.messages == []


async def test_ehlo_is_the_operators_name_and_a_users_name_is_refused(tmp_path: Path) -> None:
    recorder = SmtpScript()
    async with Peer(recorder) as peer:
        settings = settings_for(tmp_path, helo_name="diag.ops.example")
        async with api_client(create_app(settings)) as client:
            refused = await client.post("/api/diagnostics", json=config_for(peer.port, helo_name="spoof.example"))
            assert fields(refused) == {"helo_name"}
            response = await client.post("/api/diagnostics", json=config_for(peer.port, timeout_s=5))
            assert response.status_code == 201
        allowed = dataclasses.replace(settings, allow_custom_helo=True, db_path=tmp_path / "b.sqlite3")
        async with api_client(create_app(allowed)) as client:
            chosen = await client.post("/api/diagnostics", json=config_for(peer.port, helo_name="me.example"))
            assert chosen.status_code == 201
    greetings = [line for line in recorder.lines if line.upper().startswith(("EHLO", "HELO"))]
    assert greetings == ["EHLO diag.ops.example", "EHLO me.example"]


async def test_the_default_ehlo_name_is_not_this_machines_name() -> None:
    """The engine (CLI, Python) greets as Go's net/smtp does, not with the host name it runs on."""
    from diag.config import parse_config
    from diag.runner import run

    recorder = SmtpScript()
    async with Peer(recorder) as peer:
        await run(parse_config(config_for(peer.port, timeout_s=5)))
    assert [line for line in recorder.lines if line.startswith("EHLO")] == ["EHLO localhost"]


async def test_test_messages_are_limited_per_recipient_domain(tmp_path: Path, fake_smtp: FakeSMTP) -> None:
    settings = settings_for(tmp_path, allow_send=True, rate_limit_per_recipient_domain=Rate(1, 3600.0))
    async with api_client(create_app(settings)) as client:

        async def send_to(recipient: str) -> int:
            body = config_for(fake_smtp.port, recipient=recipient, send_test_message=True)
            response = await client.post("/api/diagnostics", json=body)
            return response.status_code

        assert await send_to("a@victim.test") == 201
        assert await send_to("b@VICTIM.test") == 429  # another mailbox, the same domain
        assert await send_to("a@other.test") == 201
        # Checking a recipient without sending is not a message: it is not limited by this bucket.
        check = await client.post("/api/diagnostics", json=config_for(fake_smtp.port, recipient="c@victim.test"))
        assert check.status_code == 201
    assert [m.rcpt_tos for m in fake_smtp.messages] == [["a@victim.test"], ["a@other.test"]]


# -- 2. DNS servers are destinations too --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("servers", "why"),
    [
        (["169.254.169.254"], "metadata"),
        (["fe80::1"], "link-local"),
        (["10.1.2.3"], "denied network"),
        ([2130706433], "a JSON number is not an address"),
        (["2130706433"], "an integer spelled as a string is not an address either"),
    ],
)
async def test_dns_servers_are_vetted_by_the_egress_policy(tmp_path: Path, servers: list[Any], why: str) -> None:
    settings = settings_for(tmp_path, deny_networks=("10.0.0.0/8",))
    async with api_client(create_app(settings)) as client:
        response = await client.post("/api/diagnostics", json=config_for(25, host="mail.example.test",
                                                                          dns_servers=servers))
    assert fields(response) == {"dns_servers"}, why


async def test_custom_dns_servers_can_be_turned_off(tmp_path: Path) -> None:
    async with api_client(create_app(settings_for(tmp_path, allow_custom_dns=False))) as client:
        response = await client.post("/api/diagnostics", json=config_for(25, dns_servers=["127.0.0.1"]))
    assert fields(response) == {"dns_servers"}
    assert "DIAG_ALLOW_CUSTOM_DNS" in response.json()["errors"][0]["message"]


def test_custom_dns_is_off_by_default_for_a_non_loopback_bind() -> None:
    assert Settings(host="127.0.0.1").custom_dns_allowed
    assert Settings(host="::1").custom_dns_allowed
    assert not Settings(host="0.0.0.0").custom_dns_allowed
    assert not Settings(host="192.0.2.10").custom_dns_allowed
    assert Settings.from_env({"DIAG_HOST": "0.0.0.0", "DIAG_ALLOW_CUSTOM_DNS": "1"}).custom_dns_allowed


# -- 3. one budget per server, whatever the spelling --------------------------------------------------------


async def test_target_limit_holds_across_every_spelling_of_loopback(tmp_path: Path, fake_smtp: FakeSMTP) -> None:
    """Password spraying against this machine's SMTP server under six spellings: two runs reach it."""
    settings = settings_for(tmp_path, rate_limit_per_target=Rate(2, 60.0))
    spellings = ["127.0.0.1", "localhost", "127.1.1.1", "::1", "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
                 "\u24dbocalhost", "LOCALHOST."]  # fmt: skip
    outcomes: list[str] = []
    app = create_app(settings)
    for n, host in enumerate(spellings):
        async with api_client(app, client_ip=f"10.0.0.{n + 1}") as client:
            body = config_for(fake_smtp.port, host=host, username="u", password=f"guess{n}", timeout_s=5)
            response = await client.post("/api/diagnostics", json=body)
        if response.status_code == 429:
            outcomes.append("429")
        else:
            assert response.status_code == 201, response.text
            dns = stage(response.json(), "dns")
            outcomes.append(dns["finding"]["code"] if dns["status"] == "failed" else "ran")
    assert outcomes[:2] == ["ran", "ran"]
    assert set(outcomes[2:]) <= {"429", "dns.rate_limited"}, outcomes
    assert "dns.rate_limited" in outcomes  # a new name that resolves to a spent address is caught after DNS


# -- 4. one client cannot hold the service ------------------------------------------------------------------


async def test_a_plain_run_is_cancelled_when_its_client_hangs_up(tmp_path: Path, silent_peer: Peer) -> None:
    """Through a real uvicorn: the client gives up after 1 s; the run stops, its SMTP connections close and
    its slot is free, long before the run's 60 s greeting timeout."""
    app = create_app(settings_for(tmp_path, max_concurrent_runs=1))
    async with uvicorn_serving(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=1.0) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/api/diagnostics", json=config_for(silent_peer.port, timeout_s=60))
        assert silent_peer.connections >= 1
        assert await silent_peer.wait_all_closed(15)
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
            # The only slot is free again: a run that needs it is admitted (and fails fast: nobody listens).
            free = await client.post("/api/diagnostics", json=config_for(1, timeout_s=2))
        assert free.status_code == 201, free.text
    assert app.state.services.gate.active == 0


async def read_all(client: httpx.AsyncClient, accept: str, body: dict[str, Any]) -> None:
    async with client.stream("POST", "/api/diagnostics", headers={"accept": accept}, json=body) as response:
        async for _ in response.aiter_bytes():
            pass


async def stalls_at_mail_from(reader: Reader, writer: Writer) -> None:
    await ehlo_then(reader, writer, [b"8BITMIME"])
    await hold(reader)


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream"])
async def test_a_session_stalled_mid_conversation_is_closed_when_the_client_leaves(tmp_path: Path, accept: str) -> None:
    """The SMTP session is up and MAIL FROM hangs; the client leaves. Cancellation reaches the session's
    QUIT, and the socket must still close (it stayed open when QUIT was cancelled before the close)."""
    app = create_app(settings_for(tmp_path))
    async with Peer(stalls_at_mail_from) as peer, uvicorn_serving(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=1.0) as client:
            with pytest.raises(httpx.ReadTimeout):
                await read_all(client, accept, config_for(peer.port, timeout_s=60))
        assert peer.connections == 1
        assert await peer.wait_all_closed(15)
    assert app.state.services.gate.active == 0


async def test_one_client_cannot_take_every_slot(tmp_path: Path, silent_peer: Peer) -> None:
    app = create_app(settings_for(tmp_path, max_concurrent_runs=8, max_runs_per_client=2))
    async with api_client(app, client_ip="10.0.0.1") as greedy, api_client(app, client_ip="10.0.0.2") as other:
        body = config_for(silent_peer.port, timeout_s=60)
        held = [asyncio.create_task(greedy.post("/api/diagnostics", json=body)) for _ in range(2)]
        # Each run connects only once it holds its slot, and waits 60 s for a greeting that never comes.
        assert await silent_peer.wait_connections(2, 10)
        assert app.state.services.gate.running("10.0.0.1") == 2
        third = await greedy.post("/api/diagnostics", json=body)
        assert third.status_code == 429 and third.json()["error"] == "too_many_runs"
        refused = await other.post("/api/diagnostics", json=config_for(1, timeout_s=2))
        assert refused.status_code == 201  # another client still gets a slot
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


async def test_a_run_through_the_service_has_a_wall_time_bound(tmp_path: Path, silent_peer: Peer) -> None:
    """timeout_s 100 would give this run a budget of 805 s; the service's max_run_s cuts it short."""
    app = create_app(settings_for(tmp_path, max_run_s=2.0))
    async with api_client(app) as client:
        response = await client.post("/api/diagnostics", json=config_for(silent_peer.port, timeout_s=100))
    assert response.status_code == 201
    assert stage(response.json(), "connect")["finding"]["code"] == "connect.budget_exceeded"


def test_ipv6_clients_are_keyed_by_their_64() -> None:
    from diag.service.limits import client_key

    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == client_key("192.0.2.1") == "192.0.2.1"


# -- 9. no input reaches a 500 ------------------------------------------------------------------------------


async def test_a_lone_surrogate_in_an_unknown_field_name_is_a_422(tmp_path: Path) -> None:
    raw = json.dumps(config_for(25)).replace('{"host"', '{"\\ud800x": 1, "host"').encode()
    async with api_client(create_app(settings_for(tmp_path))) as client:
        response = await client.post("/api/diagnostics", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0] == {"field": "\\ud800x", "message": "unknown field"}


# -- 12. refused requests cost nothing ----------------------------------------------------------------------


async def test_only_requests_that_start_a_run_count_against_the_client(tmp_path: Path, fake_smtp: FakeSMTP) -> None:
    """A foreign page can make a victim's browser send text/plain POSTs: they must not spend its budget."""
    app = create_app(settings_for(tmp_path, rate_limit_per_client=Rate(2, 60.0)))
    async with api_client(app) as client:
        for _ in range(5):
            foreign = await client.post("/api/diagnostics", content=b"{}", headers={"content-type": "text/plain"})
            assert foreign.status_code == 415
            assert (await client.post("/api/diagnostics", json={})).status_code == 422
        statuses = [(await client.post("/api/diagnostics", json=config_for(fake_smtp.port))).status_code
                    for _ in range(3)]
    assert statuses == [201, 201, 429]
