"""What a hostile SMTP server says reaches every sink harmless and readable: the JSON report, the stored
report (JSON and Markdown through the API), Markdown for a ticket, the terminal and the logs.

Real peers on loopback: scripted hostile peers (tests/hostile/peer.py) for replies, banners and bytes,
and FakeSMTP with a certificate whose names carry Markdown, line breaks and escape sequences. The real
engine, the real renderers and the real API; nothing is mocked.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

from markdown_it import MarkdownIt
from rich.console import Console

from diag.config import SmtpConfig, TlsMode
from diag.render import render_report, to_json, to_markdown
from diag.report import Report, Status
from diag.runner import run
from tests.hostile.peer import HostilePeer, Reader, Writer, send

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
    async with HostilePeer(markdown_replies) as peer:
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
