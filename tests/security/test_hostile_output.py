"""What a hostile SMTP server says reaches every sink harmless and readable: the JSON report, the stored
report (JSON and Markdown through the API), Markdown for a ticket, the terminal and the logs.

Real peers on loopback: scripted hostile peers (tests/peer.py) for replies, banners and bytes,
and FakeSMTP with a certificate whose names carry Markdown, line breaks and escape sequences. The real
engine, the real renderers and the real API; nothing is mocked.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from diag.config import SmtpConfig, TlsMode
from diag.render import render_report, to_json, to_markdown
from diag.report import Report, Status
from diag.runner import run
from diag.service.app import create_app
from fake_smtp import FakeSMTP
from tests import certs
from tests import peer as hostile
from tests.peer import Peer, Reader, Writer, send
from tests.service.helpers import api_client, config_for, make_settings

TIMEOUT_S = 2.0
FROM = "alerts@example.com"
# Control characters a terminal acts on; "\n" separates the renderers' own lines.
CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")

IMAGE = "![t](https://evil.example/x.png)"
LINK = "[click](https://evil.example/)"
# A title change (OSC), erase line, colours, an 8-bit CSI, bell, backspace, carriage return, rich markup.
TERMINAL_ATTACK = b"\x1b]0;pwned\x07\x1b[2K\x1b[31m[bold red]x[/]\x1b[0m \x9b2J\x07\x08\r"
RICH_MARKUP = "[bold red]x[/]"


def config(port: int, **changes: Any) -> SmtpConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "from_email": FROM, "tls_mode": TlsMode.NONE, "timeout_s": TIMEOUT_S,
    }  # fmt: skip
    return SmtpConfig(**{**values, **changes})


def terminal_text(report: Report) -> str:
    """What `smtp-diag check` prints: the stage lines and the summary panel (render_report), into a string."""
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=False, highlight=False).print(render_report(report))
    return out.getvalue()


def markdown_html(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)


def assert_harmless(report: Report) -> None:
    """Every sink: no control character, no raw line break inside a report string, no lone surrogate (the
    JSON encodes to UTF-8), no Markdown that turns into a heading, link or image, no rich markup parsed."""
    for text in strings_in(report.to_dict()):
        assert not CONTROL.search(text), text
        assert "\n" not in text, text
        assert not LONE_SURROGATE.search(text), text
    to_json(report).encode("utf-8")  # strict: a lone surrogate raises
    markdown = to_markdown(report)
    assert not CONTROL.search(markdown)
    html = markdown_html(markdown)
    assert "<img" not in html and "<a " not in html
    headings = re.findall(r"<h(\d)>(.*?)</h\1>", html)
    expected = 3 + sum(1 for s in report.stages if s.status in (Status.FAILED, Status.WARNING))
    assert len(headings) == expected, headings  # the title, Configuration, Stages, one per problem stage
    outside_code = re.sub(r"<pre>.*?</pre>|<code>.*?</code>", "", html, flags=re.S)
    assert "evil.example" not in outside_code and "Heading" not in outside_code
    terminal = terminal_text(report)
    assert not CONTROL.search(terminal), repr(terminal)


# -- item 7: Markdown injection ----------------------------------------------------------------------------


async def markdown_replies(reader: Reader, writer: Writer) -> None:
    """Markdown in the greeting, in EHLO keywords, and in a multi-line refusal of MAIL FROM, with backtick
    runs longer than a code fence and raw HTML."""
    await send(writer, f"220 hostile.test ESMTP {IMAGE} ``` `\r\n".encode())
    await reader.readline()
    await send(writer, f"250-hostile.test\r\n250-# Heading\r\n250-{IMAGE}\r\n250 PIPELINING\r\n".encode())
    while line := await reader.readline():
        if line.upper().startswith(b"MAIL"):
            await send(
                writer,
                f"550-# Heading\r\n550-{LINK}\r\n550 5.7.1 {IMAGE} ```` <img src=https://evil.example/y.png>\r\n"
                .encode(),
            )
        elif line.upper().startswith(b"QUIT"):
            await send(writer, b"221 bye\r\n")
            return
        else:
            await send(writer, b"250 ok\r\n")


async def test_markdown_from_replies_stays_in_code_spans_and_the_fenced_transcript() -> None:
    async with Peer(markdown_replies) as peer:
        report = await run(config(peer.port))
    assert report.stage("mail_from").status is Status.FAILED
    assert_harmless(report)
    html = markdown_html(to_markdown(report))
    # Readable: the server's words are all there, literally, in code.
    codes = " ".join(re.findall(r"<code>(.*?)</code>", html, re.S))
    assert IMAGE in codes and LINK in codes and "&lt;img src=https://evil.example/y.png&gt;" in codes
    transcripts = re.findall(r"<pre><code class=\"language-text\">(.*?)</code></pre>", html, re.S)
    assert len(transcripts) == 1
    assert "S: 550-# Heading" in transcripts[0] and "S: 550 5.7.1 " + IMAGE in transcripts[0]


def hostile_certificate(tmp_path: Path) -> tuple[Path, Path, str]:
    """A self-signed certificate whose CN and SANs carry a line break, a heading, a title-changing escape
    sequence and a tracking image; it is valid for neither localhost nor 127.0.0.1."""
    files = certs.self_signed(
        tmp_path, [IMAGE, "y\n## Heading\x1b[2J.example"], common_name="x\n# Heading \x1b]0;pwned\x07"
    )
    assert files.ca_pem is not None
    return files.cert_path, files.key_path, files.ca_pem


async def test_certificate_names_are_described_cleanly(tmp_path: Path, fake_smtp_factory: Any) -> None:
    cert_path, key_path, pem = hostile_certificate(tmp_path)
    server: FakeSMTP = fake_smtp_factory(tls="starttls", cert=cert_path, key=key_path)
    # The certificate itself is trusted (ca_bundle): what fails is the name, so the summary and the cause
    # quote the certificate's names.
    report = await run(config(server.port, tls_mode=TlsMode.STARTTLS, ca_bundle=pem))
    tls = report.stage("tls")
    assert tls.finding is not None and tls.finding.code == "tls.hostname_mismatch"
    assert IMAGE in tls.summary
    assert tls.facts["certificate_subject"] == "CN=x # Heading "
    assert tls.facts["certificate_sans"] == [IMAGE, "y ## Heading.example"]
    assert_harmless(report)


# -- item 8: terminal escapes ------------------------------------------------------------------------------


async def escapes_and_markup(reader: Reader, writer: Writer) -> None:
    """Escape sequences and rich markup in the greeting and in the refusal of MAIL FROM."""
    await send(writer, b"220 hostile.test " + TERMINAL_ATTACK + b" ESMTP\r\n")
    await reader.readline()
    await send(writer, b"250-hostile.test\r\n250 PIPELINING\r\n")
    while line := await reader.readline():
        if line.upper().startswith(b"MAIL"):
            await send(writer, b"550 5.7.1 " + TERMINAL_ATTACK + b" [link=https://evil.example]no[/link]\r\n")
        elif line.upper().startswith(b"QUIT"):
            await send(writer, b"221 bye\r\n")
            return
        else:
            await send(writer, b"250 ok\r\n")


async def http_answer_with_escapes(reader: Reader, writer: Writer) -> None:
    """No greeting; QUIT is answered as HTTP with escape sequences and a byte that is not UTF-8."""
    if await reader.readline():
        await send(writer, b"HTTP/1.1 400 " + TERMINAL_ATTACK + b"\xff Bad Request\r\n\r\n")


TERMINAL_CASES = {
    "replies": (escapes_and_markup, "mail_from"),
    "non-SMTP banner": (http_answer_with_escapes, "connect"),
    "malformed greeting": (hostile.says(b"2X0 " + TERMINAL_ATTACK + b"\xff\r\n"), "connect"),
}


@pytest.mark.parametrize("case", list(TERMINAL_CASES))
async def test_terminal_shows_no_escape_sequence_and_markup_literally(case: str) -> None:
    behaviour, failed_stage = TERMINAL_CASES[case]
    async with Peer(behaviour) as peer:
        report = await run(config(peer.port, timeout_s=1.0))
    assert report.stage(failed_stage).status is Status.FAILED
    assert_harmless(report)
    terminal = terminal_text(report)
    assert "\x1b" not in terminal
    assert RICH_MARKUP in terminal  # shown, not parsed into bold red
    assert "pwned" not in terminal  # the OSC title went as a whole, not just its ESC


# -- item 9b: bytes that are not UTF-8 ---------------------------------------------------------------------


async def latin1_greeting(reader: Reader, writer: Writer) -> None:
    """A Latin-1 banner (é, ÿ), valid UTF-8 beside it, and two bytes that are C1 controls in Latin-1."""
    await send(writer, b"220 caf\xe9 \xff hostile.test \xc3\xa9t\xc3\xa9 \x85\x9b ESMTP\r\n")
    await hostile.answer_plainly(reader, writer)


async def test_a_latin1_greeting_is_stored_and_read_back(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    async with Peer(latin1_greeting) as peer, api_client(app) as client:
        response = await client.post("/api/diagnostics", json=config_for(peer.port))
        assert response.status_code == 201, response.text
        url = response.headers["location"]
        stored = await client.get(url)
        markdown = await client.get(url, params={"format": "markdown"})
    assert stored.status_code == 200
    assert markdown.status_code == 200
    greeting = "220 café ÿ hostile.test été \ufffd\ufffd ESMTP"
    assert stored.json()["stages"][2]["facts"]["greeting"] == greeting
    assert greeting in markdown.text
    assert_harmless(Report.from_dict(stored.json()))


# -- item 10: an echoed password ---------------------------------------------------------------------------

USER = "alice@example.com"
PASSWORD = "pw-3e9a71-EchoPlanted"


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


NEEDLES = {
    "password": PASSWORD,
    "PASSWORD": PASSWORD.upper(),
    "base64(password), the LOGIN payload": b64(PASSWORD),
    "base64 without padding": b64(PASSWORD).rstrip("="),
    "AUTH PLAIN payload": b64(f"\0{USER}\0{PASSWORD}"),
    "inside a longer base64 text": b64(f"says {PASSWORD}")[8:-4],
}


def echoes_credentials(last_reply: bytes) -> hostile.Behaviour:
    """Offers PLAIN and LOGIN. Refuses PLAIN as a mechanism (504), quoting the payload it got and the
    password; then takes LOGIN's user and password and answers `last_reply`, where {pw} is the password
    it received, {b64} its base64 and {said} a base64 text with the password inside."""

    async def behaviour(reader: Reader, writer: Writer) -> None:
        await hostile.ehlo_then(reader, writer, [b"PIPELINING", b"AUTH PLAIN LOGIN"])
        while line := await reader.readline():
            upper = line.upper()
            if upper.startswith(b"AUTH PLAIN"):
                payload = line.split()[2]
                password = base64.b64decode(payload).split(b"\0")[2]
                await send(writer, b"504 5.5.4 PLAIN " + payload + b" refused for " + password.upper() + b"\r\n")
            elif upper.startswith(b"AUTH LOGIN"):
                await send(writer, b"334 UGFzc3dvcmQ6\r\n")
                encoded = (await reader.readline()).strip()
                password = base64.b64decode(encoded)
                said = base64.b64encode(b"says " + password)
                reply = last_reply.replace(b"{pw}", password).replace(b"{b64}", encoded)
                await send(writer, reply.replace(b"{said}", said) + b"\r\n")
            elif upper.startswith(b"QUIT"):
                await send(writer, b"221 bye\r\n")
                return
            else:
                await send(writer, b"250 ok\r\n")

    return behaviour


ECHOES = {
    "535 reply": (b"535 5.7.8 password {pw} is wrong ({b64}, {said})", "auth.bad_credentials"),
    # Not an SMTP reply at all: the echo reaches the report through the probe's error message.
    "malformed reply": (b"5x5 password {pw} is wrong ({b64}, {said})", "auth.protocol_error"),
    "escape sequences inside the echo": (
        b"535 5.7.8 password " + b"\x1b[0m".join([b"pw-3e9a71", b"-EchoPlanted"]) + b" is wrong",
        "auth.bad_credentials",
    ),
}


@pytest.mark.parametrize("case", list(ECHOES))
async def test_an_echoed_password_is_masked_everywhere(tmp_path: Path, json_logs: io.StringIO, case: str) -> None:
    last_reply, code = ECHOES[case]
    app = create_app(make_settings(tmp_path))
    async with Peer(echoes_credentials(last_reply)) as peer, api_client(app) as client:
        body = config_for(peer.port, username=USER, password=PASSWORD, timeout_s=TIMEOUT_S)
        created = await client.post("/api/diagnostics", json=body)
        assert created.status_code == 201, created.text
        url = created.headers["location"]
        outputs = {
            "POST answer": created.text,
            "stored JSON": (await client.get(url)).text,
            "stored Markdown": (await client.get(url, params={"format": "markdown"})).text,
            "report list": (await client.get("/api/diagnostics")).text,
        }
    report = Report.from_dict(created.json())
    auth = report.stage("auth")
    assert auth.finding is not None and auth.finding.code == code
    assert peer.connections == 1
    # The server did echo: the transcript shows where, masked (and PLAIN was tried before LOGIN); a
    # malformed reply is there as the note of the error it caused.
    said = " ".join(line.text for line in auth.transcript if line.direction != "C")
    assert "refused for ********" in said
    assert "password ******** is wrong" in said
    outputs |= {
        "JSON": to_json(report),
        "Markdown": to_markdown(report),
        "terminal": terminal_text(report),
        "logs": json_logs.getvalue(),
    }
    leaks = [f"{name} in {where}" for where, text in outputs.items() for name, needle in NEEDLES.items()
             if needle in text]  # fmt: skip
    assert leaks == []
    assert '"stage_finished"' in json_logs.getvalue()  # the logs did record the run

