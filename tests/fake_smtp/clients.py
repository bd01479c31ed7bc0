"""Drive a whole SMTP conversation with a real client and report where and how it ended.

Each driver goes through every step the server offers (greeting, EHLO, STARTTLS, EHLO, AUTH, MAIL FROM,
RCPT TO, DATA, end of data) with the library's own API, and turns what the client saw into an `Outcome`.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal

import aiosmtplib

from fake_smtp import FakeSMTP

SENDER = "sender@example.test"
RECIPIENT = "rcpt@example.test"


@dataclass(frozen=True)
class Outcome:
    kind: Literal["ok", "reply", "disconnected", "timeout"]
    step: str
    code: int | None = None
    text: str = ""


def make_message(subject: str = "hello", body: str = "body\n") -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, RECIPIENT, subject
    message.set_content(body)
    return message


def trusting(srv: FakeSMTP) -> ssl.SSLContext:
    assert srv.ca_pem is not None
    return ssl.create_default_context(cafile=str(srv.ca_pem))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def smtplib_conversation(
    srv: FakeSMTP, *, timeout: float = 5.0, starttls: bool = True, login: tuple[str, str] | None = None,
    implicit: bool = False,
) -> Outcome:
    step = "greeting"
    client: smtplib.SMTP | None = None
    try:
        if implicit:
            assert srv.tls_port is not None
            client = smtplib.SMTP_SSL(srv.host, srv.tls_port, timeout=timeout, context=trusting(srv))
        else:
            client = smtplib.SMTP(srv.host, srv.port, timeout=timeout)
        step = "ehlo"
        code, reply = client.ehlo()
        if code != 250:
            return Outcome("reply", step, code, _text(reply))
        if starttls and not implicit:
            step = "starttls"
            client.starttls(context=trusting(srv))
            step = "ehlo"
            code, reply = client.ehlo()
            if code != 250:
                return Outcome("reply", step, code, _text(reply))
        if login is not None:
            step = "auth"
            client.login(*login)
        step = "mail_from"
        code, reply = client.mail(SENDER)
        if code != 250:
            return Outcome("reply", step, code, _text(reply))
        step = "rcpt_to"
        code, reply = client.rcpt(RECIPIENT)
        if code != 250:
            return Outcome("reply", step, code, _text(reply))
        step = "data"
        code, reply = client.data(make_message().as_bytes())  # raises only when DATA itself is refused
        if code != 250:
            return Outcome("reply", step, code, _text(reply))
        return Outcome("ok", "done", code, _text(reply))
    except smtplib.SMTPResponseException as error:
        return Outcome("reply", step, error.smtp_code, _text(error.smtp_error))
    except smtplib.SMTPServerDisconnected as error:
        return Outcome("timeout" if "timed out" in str(error) else "disconnected", step)
    except TimeoutError:
        return Outcome("timeout", step)
    except (ConnectionError, ssl.SSLEOFError):
        return Outcome("disconnected", step)
    finally:
        if client is not None:
            client.close()


async def aiosmtplib_conversation(
    srv: FakeSMTP, *, client_timeout_s: float = 5.0, starttls: bool = True, login: tuple[str, str] | None = None,
    implicit: bool = False,
) -> Outcome:
    if implicit:
        assert srv.tls_port is not None
        client = aiosmtplib.SMTP(hostname=srv.host, port=srv.tls_port, timeout=client_timeout_s, use_tls=True,
                                 tls_context=trusting(srv))
    else:
        client = aiosmtplib.SMTP(hostname=srv.host, port=srv.port, timeout=client_timeout_s, start_tls=False)
    step = "greeting"
    seen: list[asyncio.BaseTransport | None] = []  # aiosmtplib forgets its transport after a timeout
    try:
        await client.connect()
        seen.append(client.transport)
        step = "ehlo"
        await client.ehlo()
        if starttls and not implicit:
            step = "starttls"
            await client.starttls(tls_context=trusting(srv))
            seen.append(client.transport)
            step = "ehlo"
            await client.ehlo()
        if login is not None:
            step = "auth"
            await client.login(*login)
        step = "mail_from"
        await client.mail(SENDER)
        step = "rcpt_to"
        await client.rcpt(RECIPIENT)
        step = "data"
        response = await client.data(make_message().as_bytes())
        await client.quit()
        return Outcome("ok", "done", response.code, response.message)
    except aiosmtplib.SMTPResponseException as error:
        return Outcome("reply", step, error.code, error.message)
    except aiosmtplib.SMTPTimeoutError:
        return Outcome("timeout", step)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError):
        return Outcome("disconnected", step)
    finally:
        await close_now(client, *seen)


@contextlib.asynccontextmanager
async def starttls_session(srv: FakeSMTP, *, client_timeout_s: float = 5.0) -> AsyncIterator[aiosmtplib.SMTP]:
    """An aiosmtplib session upgraded with STARTTLS (trusting the server's PEM), QUIT and closed at once at
    the end: `async with aiosmtplib.SMTP(...)` would leave the TLS socket waiting for close_notify."""
    client = aiosmtplib.SMTP(
        hostname=srv.host, port=srv.port, start_tls=True, tls_context=trusting(srv), timeout=client_timeout_s
    )
    seen: list[asyncio.BaseTransport | None] = []
    try:
        await client.connect()
        seen.append(client.transport)
        yield client
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.quit()
    finally:
        await close_now(client, *seen)


async def close_now(client: aiosmtplib.SMTP, *seen: asyncio.BaseTransport | None) -> None:
    """Close without waiting, and let the loop run the scheduled socket close.

    A polite close() of a TLS transport waits for the peer's close_notify, and of a plain one for unsent
    data a stalled server never reads; aiosmtplib drops its reference after a timeout. If the test's event
    loop ends first, the socket is never closed and a ResourceWarning (an error here) surfaces in a later
    test. So every transport the session had (`seen`) is aborted.
    """
    transports = [*seen, client.transport]
    client.close()
    for transport in transports:
        if isinstance(transport, asyncio.Transport):
            transport.abort()
    await asyncio.sleep(0)  # one loop turn: the abort's socket close was scheduled before this
