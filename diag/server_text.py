"""Text a server sent, made safe to keep: decoded, stripped of control characters, bounded, redacted.

Everything an SMTP server says (replies, banners, certificate names, the errors its bytes cause) is
attacker-controlled and ends up in the JSON report, the store, Markdown for tickets, the terminal, the
page and the logs. It is made safe once, where it enters (diag.probe, diag.transcript, diag.certs), so
no sink has to remember:

- bytes: valid UTF-8 stays; any other byte is read as Latin-1 (0xA0-0xFF, what old banners send) or
  becomes U+FFFD (0x80-0x9F, which Latin-1 would turn into C1 control characters). Never a lone
  surrogate: one made JSON encoding (and so the API and the store) fail with a 500.
- control characters: terminal escape sequences (CSI, OSC, DCS...) go as a whole, so no "[31m" is left
  behind; other C0/C1 characters, DEL, line/paragraph separators and bidi overrides go too (a tab
  becomes a space). A multi-line reply stays a list of lines; no line holds a raw line break.
- length: a line, and the number of lines, are bounded.
- secrets: the configured password, in clear (any case) and as the base64 an AUTH exchange carried
  (LOGIN: base64(password); PLAIN: base64("\\0user\\0password"), or the password at any offset of a base64
  text), is masked. This catches a server that echoes what it received; it cannot stop a server that
  wants to leak the password in some other encoding, which it has anyway.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Final

from diag.config import SmtpConfig
from diag.secret import MASK

MAX_LINE_CHARS: Final = 1000  # RFC 5321 allows 512 per reply line; room for certificate names
MAX_LINES: Final = 100  # an EHLO reply has ~15
# A base64 core shorter than this would mask innocent text (short passwords at odd offsets).
MIN_BASE64_CORE: Final = 8

# CSI (ESC [ or 8-bit 0x9B) parameters, intermediates, final byte; OSC/DCS/SOS/PM/APC up to BEL or ST
# (or the end of the line: a terminal would swallow that too); any other ESC with its intermediates and
# final byte.
ESCAPE_SEQUENCE: Final = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
LINE_BREAK: Final = re.compile(r"\r\n?|\n")
_DROPPED: Final = (
    *range(0x00, 0x20), *range(0x7F, 0xA0),  # C0, DEL, C1
    *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C,  # bidi controls
)  # fmt: skip
_TRANSLATION: Final[dict[int, str | None]] = {
    **dict.fromkeys(_DROPPED),
    0x09: " ",  # a tab separates words
    0x2028: " ",  # line and paragraph separators: line breaks to some renderers
    0x2029: " ",
}


def _byte_for(match: re.Match[str]) -> str:
    """surrogateescape keeps an undecodable byte b as U+DC00+b: read it as Latin-1 when that is a letter."""
    code = ord(match.group())
    return chr(code - 0xDC00) if 0xDCA0 <= code <= 0xDCFF else "\ufffd"


def repair(text: str) -> str:
    """Lone surrogates (aiosmtplib decodes replies with surrogateescape) as Latin-1 or U+FFFD."""
    return SURROGATE.sub(_byte_for, text) if SURROGATE.search(text) else text


def decode_bytes(data: bytes) -> str:
    """Bytes from the wire as text: UTF-8 where valid, other bytes as Latin-1 (or U+FFFD)."""
    return repair(data.decode("utf-8", "surrogateescape"))


def strip_controls(line: str) -> str:
    """One line without escape sequences (each goes as a whole) or other control characters."""
    if line.isascii() and line.isprintable():
        # Nearly every server line: printable ASCII holds no escape (each starts with ESC or a C1 byte)
        # and nothing the table drops or replaces, so both passes would return it unchanged. It runs for
        # every transcript line of every run, on the event loop (issue 13, event-loop lag).
        return line
    return ESCAPE_SEQUENCE.sub("", line).translate(_TRANSLATION)


def bound(line: str) -> str:
    if len(line) <= MAX_LINE_CHARS:
        return line
    return f"{line[:MAX_LINE_CHARS]}… ({len(line)} characters)"


class ServerText:
    """Cleans server text for one run: `line` for one line, `lines`/`reply` for a multi-line reply."""

    def __init__(self, password: str | None = None, username: str | None = None) -> None:
        self._secret = _secret_pattern(password, username) if password else None

    @classmethod
    def for_config(cls, config: SmtpConfig) -> ServerText:
        password = config.password.reveal() if config.password is not None else None
        return cls(password, config.username)

    def __repr__(self) -> str:  # never the pattern: it spells the password out
        return f"ServerText(redacting={self._secret is not None})"

    def redact(self, text: str) -> str:
        return self._secret.sub(MASK, text) if self._secret is not None else text

    def line(self, text: str) -> str:
        """One line of text: line breaks become spaces."""
        return self.lines(text, join=True)[0]

    def lines(self, text: str, *, join: bool = False) -> list[str]:
        """The lines of a (multi-line) reply, each clean; `join`: one line, breaks become spaces."""
        # Redacted before and after stripping: an echo with escape sequences inside it is still an echo.
        parts = LINE_BREAK.split(self.redact(repair(text)))
        if join:
            parts = [" ".join(parts)]
        more = len(parts) - MAX_LINES
        cleaned = [bound(self.redact(strip_controls(part))) for part in parts[:MAX_LINES]]
        if more > 0:
            cleaned.append(f"… ({more} more lines)")
        return cleaned

    def reply(self, text: str) -> str:
        """A reply's text as aiosmtplib joins it (lines separated by "\\n"), every line clean."""
        return "\n".join(self.lines(text))


def _secret_pattern(password: str, username: str | None) -> re.Pattern[str]:
    raw = password.encode("utf-8")
    exact = {_b64(raw), _b64(b"\0" + (username or "").encode("utf-8") + b"\0" + raw)}
    if username:
        exact.add(_b64(username.encode("utf-8") + b"\0" + username.encode("utf-8") + b"\0" + raw))
    forms = set(exact)
    forms.update(e.rstrip("=") for e in exact)
    forms.update(core for core in _base64_cores(raw) if len(core) >= MIN_BASE64_CORE)
    alternatives = [re.escape(f) for f in sorted(forms, key=len, reverse=True) if f]
    # The clear password in any case: servers upper-case what they quote.
    return re.compile("|".join([f"(?i:{re.escape(password)})", *alternatives]))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _base64_cores(raw: bytes) -> Iterable[str]:
    """The base64 characters that depend on `raw` alone, for each of the three offsets it can start at in
    a longer base64 text: whatever comes before or after it, these characters are the same."""
    for offset in range(3):
        encoded = _b64(b"\0" * offset + raw)
        start = -(-offset * 8 // 6)  # characters that hold bits of the prefix
        end = (offset + len(raw)) * 8 // 6  # characters made only of bits up to the password's end
        yield encoded[start:end]
