"""Captured messages: bounded, thread-safe, optionally also written to a Maildir."""

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


@dataclass(frozen=True)
class Message:
    """One accepted message. `auth_user` is the login that authenticated, never a password."""

    id: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes = field(repr=False)
    auth_user: str | None
    tls: bool
    peer: str
    received_at: dt.datetime

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
            "peer": self.peer,
            "size": self.size,
            "received_at": self.received_at.isoformat(),
        }


class Mailbox:
    """Keeps the newest `max_messages`; `wait_for` lets a test wait for deliveries without sleeping."""

    def __init__(self, max_messages: int = DEFAULT_MAX_MESSAGES, maildir: Path | None = None) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be >= 1")
        self._messages: deque[Message] = deque(maxlen=max_messages)
        self._changed = threading.Condition()
        self._next_id = 1
        self._maildir = None if maildir is None else std_mailbox.Maildir(maildir, create=True)

    def add(
        self, *, mail_from: str, rcpt_tos: list[str], raw: bytes, auth_user: str | None, tls: bool, peer: str
    ) -> Message:
        with self._changed:
            message = Message(
                id=self._next_id, mail_from=mail_from, rcpt_tos=tuple(rcpt_tos), raw=raw,
                auth_user=auth_user, tls=tls, peer=peer, received_at=dt.datetime.now(dt.UTC),
            )
            self._next_id += 1
            self._messages.append(message)
            if self._maildir is not None:
                self._maildir.add(raw)
            self._changed.notify_all()
        return message

    def snapshot(self) -> list[Message]:
        with self._changed:
            return list(self._messages)

    def get(self, message_id: int) -> Message | None:
        with self._changed:
            return next((m for m in self._messages if m.id == message_id), None)

    def clear(self) -> int:
        with self._changed:
            count = len(self._messages)
            self._messages.clear()
            return count

    def wait_for(self, count: int, timeout: float) -> list[Message]:
        """Block until at least `count` messages are held; raise TimeoutError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(f"{len(self._messages)} message(s) after {timeout} s, wanted {count}")
            return list(self._messages)
