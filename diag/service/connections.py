"""The front door: how many connections the service holds, and how long a client has to send a request head.

uvicorn keeps every connection it accepts for as long as the client likes before a request: it has no
deadline for a request head (h11 has none either; `timeout_keep_alive` only starts after a response), and
its `limit_concurrency` answers 503 to *requests* past the limit while it still accepts and holds their
connections. 1,100 connections that each sent half a request head took every file descriptor of the
process: nothing more was accepted, `/healthz` included.

So here, a connection that has not sent a complete request head yet:
- has `header_timeout_s` to do so, counted from when it opened or its previous response ended; then it is
  closed;
- is the first to go when the process holds `max_connections`: the oldest such connection is closed to
  admit the new one. A client that sends its request at once (a browser, a probe) is served while slow
  ones are churned. Only when every connection is busy with a request is a new one refused with a 503.

This subclasses uvicorn's h11 protocol (the only one installed: httptools is not a dependency) and hooks
the points where a request head arrives (`data_received`) and where a response ends
(`on_response_complete`).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_BUSY_BODY: Final = json.dumps({
    "error": "too_many_connections",
    "message": "The service holds as many connections as it may (DIAG_MAX_CONNECTIONS); try again shortly.",
}).encode()
# Written raw: the request may not have arrived yet, and h11 sends no response before a request.
BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BUSY_BODY)).encode() + b"\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    + _BUSY_BODY
)


class ConnectionGuard:
    """The open connections of one server, and which of them still owe a request head (oldest first)."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open: set[GuardedH11Protocol] = set()
        self.awaiting_head: dict[GuardedH11Protocol, None] = {}  # insertion order: the oldest first

    def admit(self, conn: GuardedH11Protocol) -> bool:
        if len(self.open) >= self.max_connections:
            if not self.awaiting_head:
                return False
            oldest = next(iter(self.awaiting_head))
            self.forget(oldest)
            oldest.transport.close()
        self.open.add(conn)
        return True

    def forget(self, conn: GuardedH11Protocol) -> None:
        self.open.discard(conn)
        self.awaiting_head.pop(conn, None)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol under a `ConnectionGuard`; `guarded_protocol` makes one class per guard."""

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow_request_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request_state()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self.guard.forget(self)
        super().connection_lost(exc)

    def _follow_request_state(self) -> None:
        if self.transport.is_closing():
            return
        if self.conn.their_state is not h11.IDLE:  # a request head has arrived
            self._cancel_head_deadline()
            self.guard.awaiting_head.pop(self, None)
        elif self not in self.guard.awaiting_head:  # a new wait; bytes of a head do not extend it
            self._await_head()

    def _await_head(self) -> None:
        self.guard.awaiting_head[self] = None
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.guard.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        self.guard.forget(self)
        self.transport.close()

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A protocol class for uvicorn.Config(http=...): uvicorn builds the protocol, so the guard rides on the class."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})
