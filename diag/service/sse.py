"""Server-sent events for a run: the response that streams them and stops the run if the client leaves.

Starlette's StreamingResponse watches for a disconnect only under ASGI spec < 2.4 and never closes the
body iterator it was given; here the watch is explicit, and the event source is always closed (shielded,
bounded) so the run's own cleanup (sockets, the concurrency slot) happens even when cancelled.

A stage can be silent for minutes (a connect timeout), and proxies cut a silent stream (nginx after 60 s):
a comment line (": ping") goes out every PING_INTERVAL_S. sse-starlette's EventSourceResponse pings too,
but leaves the source's cleanup to a CancelledError inside it (its README says so): the shielded, bounded
close above is what frees SMTP sockets and the run's slot, so this small response stays ours.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from typing import Any, Final

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

CLEANUP_TIMEOUT_S: Final = 10.0
PING_INTERVAL_S: Final = 15.0
PING: Final = b": ping\n\n"

EventSource = AsyncGenerator[tuple[str, dict[str, Any]], None]


def format_event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE frame; JSON never contains a raw newline, so one data line is enough."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        source: EventSource,
        *,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
        ping_interval_s: float = PING_INTERVAL_S,
    ) -> None:
        # Response.__init__ is skipped on purpose: it would set a Content-Length for an empty body.
        self.source = source
        self.background = None
        self.on_close = on_close
        self.ping_interval_s = ping_interval_s
        self.status_code = status_code
        self.event_headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-store",
            "x-accel-buffering": "no",  # nginx would otherwise hold the events back
            **(headers or {}),
        }
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.event_headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sending = anyio.Lock()  # events and pings come from two tasks; ASGI sends must not interleave

        async def send_body(body: bytes, more: bool = True) -> None:
            async with sending:
                await send({"type": "http.response.body", "body": body, "more_body": more})

        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            group.cancel_scope.cancel()
                            return

                async def keep_alive() -> None:
                    while True:
                        await anyio.sleep(self.ping_interval_s)
                        await send_body(PING)

                group.start_soon(watch_disconnect)
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                group.start_soon(keep_alive)
                async for name, data in self.source:
                    await send_body(format_event(name, data))
                await send_body(b"", more=False)
                group.cancel_scope.cancel()
        finally:
            try:
                with anyio.move_on_after(CLEANUP_TIMEOUT_S, shield=True):
                    await self.source.aclose()
            finally:
                # Here, not in the source: a source never iterated (client gone at once) runs no finally.
                # In its own `finally`: the run's slot is freed even if closing the source failed.
                if self.on_close is not None:
                    self.on_close()
