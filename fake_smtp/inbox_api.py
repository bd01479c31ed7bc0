"""A small JSON HTTP API over the captured messages (Starlette; served by uvicorn from FakeSMTP).

    GET    /messages           summaries, oldest first (a list, as always); the mailbox's counts ride along
                               in X-Inbox-* headers
    GET    /messages?meta=1    {"messages": [...], "bytes", "max_bytes", "dropped", "dropped_bytes"}
    GET    /                   the inbox page (HTML; fake_smtp/static/, CSP below)
    GET    /messages/{id}      one message, with its raw source as text, headers, text and HTML bodies
    GET    /messages/{id}/raw  the raw source (message/rfc822)
    DELETE /messages           forget every message
    GET/PUT /chaos             fault rules, address rules and the seed (fake_smtp/chaos_api.py)

Every request first passes `InboxGuard` (Host header, bearer token when set).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fake_smtp.address_rules import AddressRules
from fake_smtp.chaos_api import chaos_routes
from fake_smtp.faults import FaultPlan
from fake_smtp.inbox_guard import HostPolicy, InboxGuard, InboxToken
from fake_smtp.mailbox import Mailbox, Message
from fake_smtp.message_view import view

STATIC = Path(__file__).parent / "static"
# The page runs only its own script; a message's HTML is put in a sandboxed srcdoc iframe, which inherits
# this policy, so no remote image, font, style or script of a message is ever fetched.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
ASSETS = {"inbox.js": "text/javascript", "inbox.css": "text/css"}


def create_inbox_app(
    mailbox: Mailbox, *, hosts: HostPolicy, token: InboxToken | None = None,
    faults: FaultPlan | None = None, rules: AddressRules | None = None,
) -> Starlette:
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
        parts = view(message.raw).as_json()
        return JSONResponse({**message.summary(), "raw": message.raw.decode("utf-8", "replace"), **parts})

    async def get_raw(request: Request) -> Response:
        message = find(request)
        if message is None:
            return JSONResponse({"error": "no such message"}, status_code=404)
        return Response(message.raw, media_type="message/rfc822")

    async def page(request: Request) -> Response:
        return Response((STATIC / "inbox.html").read_bytes(), media_type="text/html", headers=PAGE_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return JSONResponse({"error": "no such file", "field": "path"}, status_code=404)
        return Response((STATIC / name).read_bytes(), media_type=ASSETS[name], headers=PAGE_HEADERS)

    async def delete_messages(request: Request) -> Response:
        return JSONResponse({"deleted": mailbox.clear()})

    return Starlette(
        routes=[
            Route("/", page, methods=["GET"]),
            Route("/static/{name}", asset, methods=["GET"]),
            Route("/messages", list_messages, methods=["GET"]),
            Route("/messages", delete_messages, methods=["DELETE"]),
            Route("/messages/{message_id:int}", get_message, methods=["GET"]),
            Route("/messages/{message_id:int}/raw", get_raw, methods=["GET"]),
            *(chaos_routes(faults, rules) if faults is not None and rules is not None else []),
        ],
        middleware=[Middleware(InboxGuard, hosts=hosts, token=token)],
        # A JSON API answers in JSON, also for a path or method it does not have (Starlette's are plain text).
        exception_handlers={404: _json_error, 405: _json_error},
    )


async def _json_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    message = {404: "no such path", 405: "method not allowed"}.get(status, "error")
    return JSONResponse({"error": message}, status_code=status, headers=getattr(exc, "headers", None))
