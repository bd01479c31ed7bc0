"""One captured message taken apart for people: its headers, its text body and its HTML body.

Bounded: at most `MAX_HEADERS` headers and `MAX_PART_CHARS` characters per body are returned (a message
is at most `max_size` bytes anyway); a part that cannot be decoded is shown with replacement characters
rather than failing the request.
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

MAX_HEADERS = 200
MAX_PART_CHARS = 1_000_000


@dataclass(frozen=True)
class MessageView:
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    truncated: bool

    def as_json(self) -> dict[str, Any]:
        return {"headers": [list(pair) for pair in self.headers], "text": self.text, "html": self.html,
                "truncated": self.truncated}


def _content(message: EmailMessage, subtype: str) -> tuple[str | None, bool]:
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_maintype() != "text":
        return None, False
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset, bad transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return None, False
    return content[:MAX_PART_CHARS], len(content) > MAX_PART_CHARS


def view(raw: bytes) -> MessageView:
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    headers = [(name, str(value)) for name, value in list(message.items())[:MAX_HEADERS]]
    text, text_cut = _content(message, "plain")
    html, html_cut = _content(message, "html")
    return MessageView(headers, text, html, text_cut or html_cut or len(message) > MAX_HEADERS)
