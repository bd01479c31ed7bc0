"""Every fault kind at every step, seen by smtplib and by aiosmtplib over real sockets."""

import asyncio
import smtplib
import socket
import time

import aiosmtplib
import pytest

from fake_smtp import FakeSMTP, Fault, parse_fault
from tests.fake_smtp.clients import (
    Outcome,
    aiosmtplib_conversation,
    smtplib_conversation,
    starttls_session,
    trusting,
)
from tests.fake_smtp.conftest import PASSWORD, USER

STEPS = ["greeting", "ehlo", "starttls", "auth", "mail_from", "rcpt_to", "data", "end_of_data"]
# Where the client notices: smtplib and aiosmtplib both send the message body inside their DATA call.
CLIENT_STEP = {**{step: step for step in STEPS}, "end_of_data": "data"}
STALL_TIMEOUT = 0.5
DELAY = 0.2


async def converse(client: str, srv: FakeSMTP, client_timeout_s: float = 5.0) -> Outcome:
    if client == "smtplib":
        return await asyncio.to_thread(smtplib_conversation, srv, timeout=client_timeout_s, login=(USER, PASSWORD))
    return await aiosmtplib_conversation(srv, client_timeout_s=client_timeout_s, login=(USER, PASSWORD))


CLIENTS = pytest.mark.parametrize("client", ["smtplib", "aiosmtplib"])


@CLIENTS
async def test_without_faults_the_whole_conversation_succeeds(client: str, full_server: FakeSMTP) -> None:
    outcome = await converse(client, full_server)
    assert (outcome.kind, outcome.code) == ("ok", 250)
    [message] = full_server.messages
    assert (message.auth_user, message.tls) == (USER, True)


@CLIENTS
@pytest.mark.parametrize("step", STEPS)
async def test_reply_fault(client: str, step: str, full_server: FakeSMTP) -> None:
    full_server.set_faults([Fault(step, "reply", code=554, text="5.7.1 chosen by the test")])  # type: ignore[arg-type]
    outcome = await converse(client, full_server)
    assert outcome == Outcome("reply", CLIENT_STEP[step], 554, "5.7.1 chosen by the test")
    assert full_server.messages == []


@CLIENTS
@pytest.mark.parametrize("step", STEPS)
async def test_disconnect_fault(client: str, step: str, full_server: FakeSMTP) -> None:
    full_server.set_faults([Fault(step, "disconnect")])  # type: ignore[arg-type]
    outcome = await converse(client, full_server)
    assert (outcome.kind, outcome.step) == ("disconnected", CLIENT_STEP[step])


@CLIENTS
@pytest.mark.parametrize("step", STEPS)
async def test_stall_fault(client: str, step: str, full_server: FakeSMTP) -> None:
    full_server.set_faults([Fault(step, "stall")])  # type: ignore[arg-type]
    outcome = await converse(client, full_server, client_timeout_s=STALL_TIMEOUT)
    assert (outcome.kind, outcome.step) == ("timeout", CLIENT_STEP[step])


@CLIENTS
@pytest.mark.parametrize("step", STEPS)
async def test_delay_fault_then_proceeds(client: str, step: str, full_server: FakeSMTP) -> None:
    full_server.set_faults([Fault(step, "delay", seconds=DELAY)])  # type: ignore[arg-type]
    started = time.monotonic()
    outcome = await converse(client, full_server)
    assert (outcome.kind, outcome.code) == ("ok", 250)
    assert time.monotonic() - started >= DELAY  # a lower bound: sleeping cannot end early
    assert len(full_server.messages) == 1


@CLIENTS
@pytest.mark.parametrize("code", [421, 554])
async def test_greeting_refusal_uses_realistic_text(client: str, code: int, full_server: FakeSMTP) -> None:
    full_server.set_faults([parse_fault(f"greeting=reply:{code}")])
    outcome = await converse(client, full_server)
    assert (outcome.kind, outcome.step, outcome.code) == ("reply", "greeting", code)
    assert outcome.text.startswith(f"{code // 100}.")


@CLIENTS
async def test_no_starttls_hides_and_refuses_starttls(client: str, full_server: FakeSMTP) -> None:
    full_server.set_faults([parse_fault("ehlo=no-starttls")])
    if client == "smtplib":
        with smtplib.SMTP(full_server.host, full_server.port, timeout=5) as smtp:
            smtp.ehlo()
            assert not smtp.has_extn("starttls")
            assert smtp.docmd("STARTTLS")[0] == 502
    else:
        async with aiosmtplib.SMTP(hostname=full_server.host, port=full_server.port, start_tls=False,
                                   timeout=5) as smtp:
            await smtp.ehlo()
            assert not smtp.supports_extension("starttls")
            with pytest.raises(aiosmtplib.SMTPException, match="STARTTLS"):
                await smtp.starttls()


def test_no_auth_hides_auth_with_smtplib(full_server: FakeSMTP) -> None:
    full_server.set_faults([parse_fault("ehlo=no-auth")])
    with smtplib.SMTP(full_server.host, full_server.port, timeout=5) as smtp:
        smtp.starttls(context=trusting(full_server))
        smtp.ehlo()
        assert not smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            smtp.login(USER, PASSWORD)
        assert smtp.docmd("AUTH", "PLAIN")[0] == 503
        assert smtp.mail("a@example.test") == (530, b"5.7.0 Authentication required")


async def test_no_auth_hides_auth_with_aiosmtplib(full_server: FakeSMTP) -> None:
    full_server.set_faults([parse_fault("ehlo=no-auth")])
    async with starttls_session(full_server) as smtp:
        assert not smtp.supports_extension("auth")
        with pytest.raises(aiosmtplib.SMTPException, match=r"(?i)auth"):
            await smtp.login(USER, PASSWORD)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.mail("a@example.test")
        assert refused.value.code == 530


async def test_set_faults_while_running_applies_to_the_next_step(full_server: FakeSMTP) -> None:
    async with starttls_session(full_server) as smtp:
        await smtp.login(USER, PASSWORD)
        full_server.set_faults([parse_fault("mail_from=reply:451")])
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await smtp.mail("a@example.test")
        assert refused.value.code == 451
        full_server.set_faults([])
        assert (await smtp.mail("a@example.test")).code == 250
    assert full_server.faults == []


async def test_times_limits_a_fault_to_the_first_occurrences(full_server: FakeSMTP) -> None:
    full_server.set_faults([parse_fault("rcpt_to#1=reply:451:4.7.1 Greylisted, try again later")])
    first = await converse("aiosmtplib", full_server)
    second = await converse("aiosmtplib", full_server)
    assert (first.kind, first.code, first.text) == ("reply", 451, "4.7.1 Greylisted, try again later")
    assert (second.kind, second.code) == ("ok", 250)


def test_stop_is_clean_while_a_client_is_stalled() -> None:
    srv = FakeSMTP(faults=[parse_fault("ehlo=stall")]).start()
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220 ")
        sock.sendall(b"EHLO client.test\r\n")
        srv.stop()  # must not wait for the stalled session (pytest-timeout guards this)
        assert sock.recv(1024) == b""  # the server closed the connection


def test_faults_given_at_start_apply() -> None:
    with FakeSMTP(faults=[parse_fault("greeting=reply:421")]) as srv, \
            socket.create_connection((srv.host, srv.port), timeout=5) as sock:
        assert sock.recv(1024).startswith(b"421 4.3.2 ")
        assert sock.recv(1024) == b""
