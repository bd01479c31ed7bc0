"""A small JSON HTTP API over the captured messages (Starlette; served by uvicorn from FakeSMTP).

    GET    /messages           summaries, oldest first (a list, as always); the mailbox's counts ride along
                               in X-Inbox-* headers
    GET    /messages?meta=1    {"messages": [...], "bytes", "max_bytes", "dropped", "dropped_bytes"}
    GET    /messages/{id}      one message, with its raw source as text
    GET    /messages/{id}/raw  the raw source (message/rfc822)
    DELETE /messages           forget every message

Every request first passes `InboxGuard` (Host header, bearer token when set).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fake_smtp.inbox_guard import HostPolicy, InboxGuard, InboxToken
from fake_smtp.mailbox import Mailbox, Message


def create_inbox_app(mailbox: Mailbox, *, hosts: HostPolicy, token: InboxToken | None = None) -> Starlette:
    def find(request: Request) -> Message | None:
        return mailbox.get(request.path_params["message_id"])

    async def list_messages(request: Request) -> Response:
        messages, stats = mailbox.snapshot_with_stats()
        summaries = [message.summary() for message in messages]
        counts = {"bytes": stats.bytes, "max_bytes": stats.max_bytes, "dropped": stats.dropped,
                  "dropped_bytes": stats.dropped_bytes}
        # The plain list stays the default answer: clients written against it keep working.
        if request.query_params.get("meta") in ("1", "true"):
            return JSONResponse({"messages": summaries, **counts})
        headers = {f"x-inbox-{name.replace('_', '-')}": str(value) for name, value in counts.items()}
        return JSONResponse(summaries, headers=headers)

    async def get_message(request: Request) -> Response:
        message = find(request)
        if message is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return JSONResponse({**message.summary(), "raw": message.raw.decode("utf-8", "replace")})

    async def get_raw(request: Request) -> Response:
        message = find(request)
        if message is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return Response(message.raw, media_type="message/rfc822")

    async def delete_messages(request: Request) -> Response:
        return JSONResponse({"deleted": mailbox.clear()})

    return Starlette(
        routes=[
            Route("/messages", list_messages, methods=["GET"]),
            Route("/messages", delete_messages, methods=["DELETE"]),
            Route("/messages/{message_id:int}", get_message, methods=["GET"]),
            Route("/messages/{message_id:int}/raw", get_raw, methods=["GET"]),
        ],
        middleware=[Middleware(InboxGuard, hosts=hosts, token=token)],
        # A JSON API answers in JSON, also for a path or method it does not have (Starlette's are plain text).
        exception_handlers={404: _json_error, 405: _json_error},
    )


async def _json_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = {404: "no such path", 405: "method not allowed"}.get(status, "error")
    return JSONResponse({"error": message}, status_code=status, headers=getattr(exc, "headers", None))
