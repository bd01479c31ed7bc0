"""The protocol transcript: C:/S: lines with offsets, AUTH payloads masked, every line and the total bounded.

Masking happens when a line is recorded, so no later sink can leak what was never stored: the AUTH
command keeps only its mechanism, and every client line after it is masked until the server answers
with something other than 334 (the challenge-response exchange is over). Every line, and above all what
the server said, goes through the run's `ServerText` first: no control characters, no raw line breaks,
no echo of the password.
"""

from __future__ import annotations

import time
from typing import Final

from diag.report import TranscriptLine
from diag.secret import MASK
from diag.server_text import ServerText

MAX_LINE_CHARS: Final = 512
MAX_LINES: Final = 400


class Transcript:
    def __init__(self, started: float | None = None, server_text: ServerText | None = None) -> None:
        self._started = time.monotonic() if started is None else started
        self.server_text = server_text if server_text is not None else ServerText()
        self._lines: list[TranscriptLine] = []
        self._in_auth = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._lines)

    def since(self, index: int) -> tuple[TranscriptLine, ...]:
        return tuple(self._lines[index:])

    def client(self, line: str) -> None:
        verb = line.split(" ", 1)[0].upper()
        if verb == "AUTH":
            parts = line.split(" ")
            line = " ".join(parts[:2] + ([MASK] if len(parts) > 2 else []))
            self._in_auth = True
        elif self._in_auth:
            line = MASK
        self._add("C", line)

    def server(self, code: int, message: str) -> None:
        if self._in_auth and code != 334:
            self._in_auth = False
        lines = self.server_text.lines(message)
        for i, text in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            self._add("S", f"{code}{sep}{text}")

    def server_raw(self, text: str) -> None:
        """Bytes from the server that are not an SMTP reply (an HTTP or SSH banner, garbage)."""
        self._add("S", text)

    def note(self, text: str) -> None:
        self._add("*", text)

    def _add(self, direction: str, text: str) -> None:
        if len(self._lines) >= MAX_LINES:
            self.dropped += 1
            return
        if len(self._lines) == MAX_LINES - 1:
            # The last place says so, where it happened; the report carries the count (runner).
            direction, text = "*", f"the transcript is full ({MAX_LINES} lines): later lines are not recorded"
            self.dropped += 1
        text = self.server_text.line(text)
        if len(text) > MAX_LINE_CHARS:
            text = f"{text[:MAX_LINE_CHARS]}… ({len(text)} characters)"
        t_ms = (time.monotonic() - self._started) * 1000.0
        self._lines.append(TranscriptLine(t_ms, direction, text))
