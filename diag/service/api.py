"""The JSON API: run a diagnosis (JSON or a live event stream), read stored reports, list them.

Input is checked in the order that costs least first: per-client rate limit, content type (415), body
size (413, from Content-Length and from the bytes actually streamed), JSON (400), the config schema and
the egress policy (422), per-target rate limit (429), the cap on runs in flight (503). Every one of
them answers with JSON; no input reaches a 500.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator
from typing import Any, Final

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from diag.config import ConfigError, SmtpConfig, parse_config
from diag.policy import parse_ip_literal
from diag.report import Report, RunFinished
from diag.service.limits import retry_after_header
from diag.service.sse import EventStreamResponse
from diag.service.state import Services

log = structlog.get_logger("diag.service")

REPORT_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
VERDICTS: Final = ("valid", "invalid")


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def field_errors(errors: list[dict[str, str]], status: int = 422) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status)


def client_key(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def target_key(host: str) -> str:
    """One key per destination, whatever the spelling: "127.1", "0x7f000001" and "127.0.0.1" are one."""
    address = parse_ip_literal(host)
    return str(address) if address is not None else host.strip().rstrip(".").lower()


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isascii() and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def is_json_content_type(value: str) -> bool:
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def wants(request: Request, media_type: str) -> bool:
    return media_type in request.headers.get("accept", "").lower()


async def create_diagnostic(request: Request) -> Response:
    services: Services = request.app.state.services
    wait = services.client_limiter.acquire(client_key(request))
    if wait is not None:
        return error(429, "rate_limited", "Too many diagnoses from this client; retry later.",
                     {"Retry-After": retry_after_header(wait)})
    if not is_json_content_type(request.headers.get("content-type", "")):
        return error(415, "unsupported_media_type", "Send the configuration as application/json.")
    try:
        body = await read_body(request, services.settings.max_body_bytes)
    except BodyTooLarge:
        return error(413, "payload_too_large", f"The body must be at most {services.settings.max_body_bytes} bytes.")
    except ClientDisconnect:
        return error(400, "client_disconnected", "The request body was not received completely.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return error(400, "malformed_json", "The body is not valid JSON.")
    if not isinstance(data, dict):
        return error(400, "malformed_json", "The body must be a JSON object.")
    try:
        config = parse_config(data)
    except ConfigError as exc:
        return field_errors([e.to_dict() for e in exc.errors])
    except (TypeError, ValueError, OverflowError) as exc:
        # A value parse_config did not foresee (e.g. port "²": isdigit() but not int()): still the
        # client's input, so a 422, never a 500. Logged by type only, to get the schema fixed.
        log.warning("config_parse_unexpected", error_type=type(exc).__name__)
        return field_errors([{"field": "body", "message": "a value has an unexpected form; check each field"}])
    denied = policy_errors(services, config)
    if denied:
        return field_errors(denied)
    wait = services.target_limiter.acquire(target_key(config.host))
    if wait is not None:
        return error(429, "rate_limited", "Too many diagnoses of this server; retry later.",
                     {"Retry-After": retry_after_header(wait)})
    if not services.gate.try_enter():
        return error(503, "busy", "Too many diagnoses are running; retry shortly.", {"Retry-After": "5"})
    run_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(run_id=run_id)
    location = {"Location": f"/api/diagnostics/{run_id}"}
    if wants(request, "text/event-stream"):
        return EventStreamResponse(
            stream_run(services, config, run_id), status_code=201, headers=location, on_close=services.gate.leave
        )
    try:
        report = await run_to_report(services, config, run_id)
    finally:
        services.gate.leave()
    return JSONResponse(report.to_dict(), status_code=201, headers=location)


def policy_errors(services: Services, config: SmtpConfig) -> list[dict[str, str]]:
    """What the egress policy refuses before any lookup: the port, and the host when it is an IP literal."""
    errors: list[dict[str, str]] = []
    reason = services.policy.vet_port(config.port)
    if reason:
        errors.append({"field": "port", "message": f"not allowed by this service's egress policy: {reason}"})
    address = parse_ip_literal(config.host)
    if address is not None:
        reason = services.policy.vet_address(str(address))
        if reason:
            errors.append({"field": "host", "message": f"not allowed by this service's egress policy: {reason}"})
    return errors


async def run_to_report(services: Services, config: SmtpConfig, run_id: str) -> Report:
    from diag.runner import run

    report = await run(config, policy=services.policy, run_id=run_id)
    await run_in_threadpool(services.store.save, report)
    return report


async def stream_run(
    services: Services, config: SmtpConfig, run_id: str
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """The run's events for SSE; the report is saved before the last event goes out."""
    from diag.runner import run_events

    # run_events is an async generator; its declared type (AsyncIterator) just does not say so.
    events = run_events(config, policy=services.policy, run_id=run_id)
    finished = False
    try:
        async for event in events:
            if isinstance(event, RunFinished):
                await run_in_threadpool(services.store.save, event.report)
                finished = True
            yield event.kind, event.to_dict()
    finally:
        await events.aclose()
        if not finished:
            log.info("run_cancelled", reason="client disconnected")


async def get_diagnostic(request: Request) -> Response:
    services: Services = request.app.state.services
    report_id = request.path_params["report_id"]
    fmt = request.query_params.get("format")
    if fmt not in (None, "json", "markdown"):
        return field_errors([{"field": "format", "message": "must be json or markdown"}])
    report = await run_in_threadpool(services.store.get, report_id) if REPORT_ID.match(report_id) else None
    if report is None:
        return error(404, "not_found", "No report with this id (it may have expired).")
    if fmt == "markdown" or (fmt is None and wants(request, "text/markdown")):
        from diag.render import to_markdown

        return PlainTextResponse(to_markdown(report), media_type="text/markdown; charset=utf-8")
    return JSONResponse(report.to_dict())


async def list_diagnostics(request: Request) -> Response:
    services: Services = request.app.state.services
    params = request.query_params
    errors: list[dict[str, str]] = []
    verdict = params.get("verdict") or None
    if verdict is not None and verdict not in VERDICTS:
        errors.append({"field": "verdict", "message": "must be valid or invalid"})
    host = params.get("host") or None
    if host is not None and len(host) > 1024:
        errors.append({"field": "host", "message": "must be at most 1024 characters"})
    limit = 50
    raw_limit = params.get("limit")
    if raw_limit:
        if raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= 500:
            limit = int(raw_limit)
        else:
            errors.append({"field": "limit", "message": "must be a whole number from 1 to 500"})
    if errors:
        return field_errors(errors)
    summaries = await run_in_threadpool(lambda: services.store.list(host=host, verdict=verdict, limit=limit))
    return JSONResponse({"items": [s.to_dict() for s in summaries]})


routes = [
    Route("/api/diagnostics", create_diagnostic, methods=["POST"]),
    Route("/api/diagnostics", list_diagnostics, methods=["GET"]),
    Route("/api/diagnostics/{report_id}", get_diagnostic, methods=["GET"]),
]
