"""Captured messages: bounded in count and in bytes, thread-safe, optionally also written to a Maildir."""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import mailbox as std_mailbox
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MAX_MESSAGES = 1000
# 1000 messages of up to 10 MiB each would be 10 GB; the byte bound is what keeps memory in check.
DEFAULT_MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Message:
    """One accepted message. `auth_user` is the login that authenticated, never a password."""

    id: int
    mail_from: str
    rcpt_tos: list[str]  # a list, as JSON and aiosmtpd have it (a copy: the mailbox never shares its own)
    raw: bytes = field(repr=False)
    auth_user: str | None
    tls: bool
    peer: str  # the client's address
    received_at: dt.datetime
    peer_port: int | None = None

    @property
    def subject(self) -> str | None:
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(self.raw)
        subject = headers.get("subject")
        return None if subject is None else str(subject)

    @property
    def size(self) -> int:
        return len(self.raw)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mail_from": self.mail_from,
            "rcpt_tos": list(self.rcpt_tos),
            "subject": self.subject,
            "auth_user": self.auth_user,
            "tls": self.tls,
            "peer": {"host": self.peer, "port": self.peer_port},
            "size": self.size,
            "received_at": self.received_at.isoformat(),
        }


@dataclass(frozen=True)
class MailboxStats:
    """What the mailbox holds now, and how many messages it has dropped to stay within its bounds."""

    held: int
    bytes: int
    max_bytes: int
    dropped: int
    dropped_bytes: int


class Mailbox:
    """Keeps the newest messages within `max_messages` and `max_bytes` (of raw source), dropping the oldest.

    A message larger than `max_bytes` on its own is dropped at once (and counted), the others kept.
    `wait_for` lets a test wait for deliveries without sleeping.
    """

    def __init__(
        self, max_messages: int = DEFAULT_MAX_MESSAGES, maildir: Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        self._messages: deque[Message] = deque()
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._bytes = 0
        self._dropped = 0
        self._dropped_bytes = 0
        self._changed = threading.Condition()
        self._next_id = 1
        self._maildir = None if maildir is None else std_mailbox.Maildir(maildir, create=True)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def add(
        self, *, mail_from: str, rcpt_tos: list[str], raw: bytes, auth_user: str | None, tls: bool, peer: str,
        peer_port: int | None = None,
    ) -> Message:
        with self._changed:
            message = Message(
                id=self._next_id, mail_from=mail_from, rcpt_tos=list(rcpt_tos), raw=raw,
                auth_user=auth_user, tls=tls, peer=peer, peer_port=peer_port, received_at=dt.datetime.now(dt.UTC),
            )
            self._next_id += 1
            if message.size > self._max_bytes:
                # It could never fit: drop it alone rather than emptying the mailbox for nothing.
                self._count_dropped(message)
            else:
                self._messages.append(message)
                self._bytes += message.size
                self._drop_oldest_past_bounds()
            if self._maildir is not None:
                self._maildir.add(raw)
            self._changed.notify_all()
        return message

    def _drop_oldest_past_bounds(self) -> None:
        while self._messages and (len(self._messages) > self._max_messages or self._bytes > self._max_bytes):
            oldest = self._messages.popleft()
            self._bytes -= oldest.size
            self._count_dropped(oldest)

    def _count_dropped(self, message: Message) -> None:
        self._dropped += 1
        self._dropped_bytes += message.size

    def snapshot(self) -> list[Message]:
        with self._changed:
            return list(self._messages)

    def stats(self) -> MailboxStats:
        with self._changed:
            return self._stats()

    def snapshot_with_stats(self) -> tuple[list[Message], MailboxStats]:
        """The messages and the counts taken together, so a listing and its totals agree."""
        with self._changed:
            return list(self._messages), self._stats()

    def _stats(self) -> MailboxStats:
        return MailboxStats(held=len(self._messages), bytes=self._bytes, max_bytes=self._max_bytes,
                            dropped=self._dropped, dropped_bytes=self._dropped_bytes)

    def get(self, message_id: int) -> Message | None:
        with self._changed:
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> int:
        with self._changed:
            count = len(self._messages)
            self._messages.clear()
            self._bytes = 0  # what was deleted on request is not counted as dropped
            return count

    def wait_for(self, count: int, timeout: float) -> list[Message]:
        """Block until at least `count` messages are held; raise TimeoutError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"{len(self._messages)} message(s) after {timeout} s, wanted {count}")
            return list(self._messages)
