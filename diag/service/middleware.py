"""Pure ASGI middleware (streaming-safe): request context and logging, the Host check, the bearer token on /api."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Final

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diag.logging import get_logger
from diag.service.hosts import HostAllowList
from diag.service.settings import ApiToken

log = get_logger("diag.service")

REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SECURITY_HEADERS: Final = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    # The page uses only its own scripts and styles; fetch goes to the same origin.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
}


class RequestContextMiddleware:
    """Binds a request id (X-Request-ID, ours when absent or odd), echoes it, logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get("x-request-id", "")
        request_id = presented if REQUEST_ID.match(presented) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.monotonic()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            # The path only: a query string could carry anything a client typed.
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"][:200],
                status=status,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
                client=scope["client"][0] if scope.get("client") else None,
            )
            structlog.contextvars.clear_contextvars()


# Kubernetes probes send the pod IP as Host, which no allow list knows; these two answer only "ok" or
# "ready" and run nothing, so a rebound page learns nothing from them.
HOST_CHECK_EXEMPT: Final = frozenset({"/healthz", "/readyz"})


class AllowedHostsMiddleware:
    """Refuses a request whose Host header is not allowed (DNS rebinding) with a JSON 400, before any route.

    Not Starlette's TrustedHostMiddleware: it answers in plain text, and compares the header with its port,
    so "localhost" would not allow "localhost:8025".
    """

    def __init__(self, app: ASGIApp, allowed: HostAllowList) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HOST_CHECK_EXEMPT:
            await self.app(scope, receive, send)
            return
        presented = Headers(scope=scope).get("host")
        if self.allowed.allows(presented):
            await self.app(scope, receive, send)
            return
        body = json.dumps({
            "error": "invalid_host",
            "field": "Host",
            "message": f"This service does not answer to the Host {(presented or '')[:100]!r}; "
            "its operator can allow it with DIAG_ALLOWED_HOSTS.",
        }).encode()
        await send({
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        })
        await send({"type": "http.response.body", "body": body})


class BearerTokenMiddleware:
    """When a token is configured, every /api route needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: ApiToken | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or not _is_api(scope["path"]):
            await self.app(scope, receive, send)
            return
        scheme, _, presented = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented and self.token.matches(presented.strip()):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "unauthorized", "message": "Send Authorization: Bearer <token>."}).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="smtp-diag"'),
            ],
        })
        await send({"type": "http.response.body", "body": body})


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")
