"""The front door: how many connections the service holds, how long a client has to send a request head, and
how large that head may be.

uvicorn keeps every connection it accepts for as long as the client likes before a request: it has no
deadline for a request head (`timeout_keep_alive` only starts after a response), and its
`limit_concurrency` answers 503 to *requests* past the limit while it still accepts and holds their
connections. 1,100 connections that each sent half a request head took every file descriptor of the
process: nothing more was accepted, `/healthz` included. Nor does uvicorn's httptools protocol bound a
request head: it gathers the URL and the headers as they come, and httptools holds a header value until it
ends, however long.

So here, a connection that has not sent a complete request head yet:
- has `header_timeout_s` to do so, counted from when it opened or its previous response ended; then it is
  closed;
- is the first to go when the process holds `max_connections`: the oldest such connection is closed to
  admit the new one. A client that sends its request at once (a browser, a probe) is served while slow
  ones are churned. Only when every connection is busy with a request is a new one refused with a 503.

And a request head (request line and headers) larger than MAX_REQUEST_HEAD_BYTES is answered 431 and its
connection closed: a head still coming as soon as the reads that left it incomplete add up to more (so it
never takes more than that plus one read), a head that arrived whole within one read in its turn.

This subclasses uvicorn's httptools protocol (a C parser, llhttp: more runs a second and less event-loop
lag than h11's, issue 13) and hooks the points where a request head begins (`on_message_begin`) and ends
(`on_headers_complete`), where bytes arrive (`data_received`) and where a response ends
(`on_response_complete`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The request line and headers together. Here, not a setting: the service's own requests (the page, the API,
# probes) need a few hundred bytes, and 16 KiB is what h11, uvicorn's other parser, allowed by default.
MAX_REQUEST_HEAD_BYTES: Final = 16 * 1024

logger = logging.getLogger(__name__)


_BUSY_BODY: Final = json.dumps({
    "error": "too_many_connections",
    "message": "The service holds as many connections as it may (DIAG_MAX_CONNECTIONS); try again shortly.",
}).encode()
# Written raw: the request may not have arrived yet, and uvicorn sends no response before a request.
BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: " + str(len(_BUSY_BODY)).encode() + b"\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    + _BUSY_BODY
)

_HEAD_TOO_LARGE_BODY: Final = json.dumps({
    "error": "request_head_too_large",
    "message": f"The request line and headers may take at most {MAX_REQUEST_HEAD_BYTES} bytes together.",
}).encode()
_HEAD_TOO_LARGE_HEADERS: Final = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_HEAD_TOO_LARGE_BODY)).encode()),
    (b"connection", b"close"),
]
# Written raw for a head that is still coming: no request has arrived for uvicorn to answer.
HEAD_TOO_LARGE_RESPONSE: Final = b"".join([
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
    *(name + b": " + value + b"\r\n" for name, value in _HEAD_TOO_LARGE_HEADERS),
    b"\r\n", _HEAD_TOO_LARGE_BODY,
])  # fmt: skip


async def _answer_head_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    """The app for a complete head over the bound: answered in its turn, like any request, then closed."""
    await send({"type": "http.response.start", "status": 431, "headers": _HEAD_TOO_LARGE_HEADERS})
    await send({"type": "http.response.body", "body": _HEAD_TOO_LARGE_BODY})


class ConnectionGuard:
    """The open connections of one server, and which of them still owe a request head (oldest first)."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self.open: set[GuardedHttpToolsProtocol] = set()
        self.awaiting_head: dict[GuardedHttpToolsProtocol, None] = {}  # insertion order: the oldest first

    def admit(self, conn: GuardedHttpToolsProtocol) -> bool:
        if len(self.open) >= self.max_connections:
            if not self.awaiting_head:
                return False
            oldest = next(iter(self.awaiting_head))
            self.forget(oldest)
            oldest.transport.close()
        self.open.add(conn)
        return True

    def forget(self, conn: GuardedHttpToolsProtocol) -> None:
        self.open.discard(conn)
        self.awaiting_head.pop(conn, None)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under a `ConnectionGuard`; `guarded_protocol` makes one class per guard."""

    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._in_head = False  # the parser is inside a request head: from its first byte to its blank line
        self._head_began_in_read = False
        self._head_bytes = 0  # received while the head in progress is incomplete (at most: see data_received)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._await_head()

    def data_received(self, data: bytes) -> None:
        self._head_began_in_read = False
        super().data_received(data)  # the parser calls on_message_begin, on_headers_complete... from here
        if self.transport.is_closing():
            return
        if self._in_head:  # the head is still incomplete: what it has taken so far is in the parser's buffers
            # A read in which the head began counts in full: what came before it in the same read (the end
            # of a pipelined request) cannot be told apart, and counting too much keeps the bound a bound.
            self._head_bytes = len(data) if self._head_began_in_read else self._head_bytes + len(data)
            self._refuse_an_incomplete_head_too_large()
        self._follow_request_state()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_began_in_read = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._parsed_head_bytes() <= MAX_REQUEST_HEAD_BYTES:
            super().on_headers_complete()
            return
        # Over the bound, though the reads that left it incomplete were not (its last read brought most of
        # it): uvicorn answers it with the 431 app instead of ours, in its turn (after the responses to the
        # requests pipelined before it), and closes the connection.
        self._log_refusal()
        app, self.app = self.app, _answer_head_too_large
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        self._refuse_an_incomplete_head_too_large()  # one that grew past the bound while this response went out
        self._follow_request_state()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        self.guard.forget(self)
        super().connection_lost(exc)

    def _parsed_head_bytes(self) -> int:
        """The head as uvicorn keeps it: the request line (method, URL, version: 12 bytes of spaces, version
        and line end around the URL), each header (name, value: 4 bytes of ": " and line end), the blank line."""
        request_line = len(self.parser.get_method()) + len(self.url) + 12
        return request_line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2

    def _request_in_flight(self) -> bool:
        """A complete head is being answered or waits its turn. `self.cycle` is the newest request; one
        pipelined behind a response in progress waits in `self.pipeline` until that response is complete."""
        return self.cycle is not None and not self.cycle.response_complete

    def _follow_request_state(self) -> None:
        if self.transport.is_closing():
            return
        if self._request_in_flight():
            self._cancel_head_deadline()
            self.guard.awaiting_head.pop(self, None)
        elif self not in self.guard.awaiting_head:  # a new wait; bytes of a head do not extend it
            self._await_head()

    def _refuse_an_incomplete_head_too_large(self) -> None:
        if not self._in_head or self._head_bytes <= MAX_REQUEST_HEAD_BYTES:
            return
        if self._request_in_flight():
            # The 431 cannot go out in the middle of an earlier request's response: read no more (so the
            # head stops growing) and answer when that response is complete (on_response_complete).
            self.flow.pause_reading()
            return
        self._log_refusal()
        self._cancel_head_deadline()
        self.guard.forget(self)
        self.transport.write(HEAD_TOO_LARGE_RESPONSE)
        self.transport.close()

    def _log_refusal(self) -> None:
        # Not the head itself: it may carry a token or a password.
        client = self.client[0] if self.client else "?"
        logger.warning("request head over %d bytes from %s: answered 431", MAX_REQUEST_HEAD_BYTES, client)

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


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for uvicorn.Config(http=...): uvicorn builds the protocol, so the guard rides on the class."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"guard": guard})
