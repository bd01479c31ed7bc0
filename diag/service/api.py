"""The JSON API: run a diagnosis (JSON or a live event stream), read stored reports, list them.

Input is checked in the order that costs least first: content type (415), body size (413, from
Content-Length and from the bytes actually streamed), JSON (400), the config schema (422), what this
service allows (422: the egress policy for the host, the port and every DNS server; sending, a custom EHLO
name and custom DNS servers only when the operator enabled them), then admission: the per-client,
per-target and per-recipient-domain rate limits (429), the runs in flight for this client (429) and in all
(a bounded wait in a FIFO queue for a slot, then 503; with PostgreSQL admission, 503 at once). Only a
request that passes all of them spends any budget, so a request a foreign page can make (text/plain,
malformed) costs its victim nothing. Every answer is JSON; no input reaches a 500.

A run ends when its client leaves: the SSE stream watches for that (sse.py), and so does a plain JSON run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio
import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from diag.config import ConfigError, SmtpConfig, parse_config
from diag.input_problems import input_problems
from diag.logging import get_logger
from diag.origin import with_origin
from diag.policy import parse_ip_literal
from diag.render import to_markdown
from diag.report import VERDICTS, Report, RunFinished
from diag.runner import run, run_events
from diag.service.limits import (
    Limit,
    address_key,
    client_key,
    recipient_domain_key,
    retry_after_header,
    target_host_key,
)
from diag.service.sse import EventStreamResponse
from diag.service.state import Services

log = get_logger("diag.service")

REPORT_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The list's query parameters (the OpenAPI document reads them from here).
LIST_LIMIT_DEFAULT: Final = 50
LIST_LIMIT_MAX: Final = 500
MAX_HOST_FILTER_LENGTH: Final = 1024
T = TypeVar("T")


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def field_errors(errors: list[dict[str, str]], status: int = 422) -> JSONResponse:
    return JSONResponse({"errors": errors}, status_code=status)


def request_client(request: Request) -> str:
    return client_key(request.client.host if request.client else None)


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


async def json_object(request: Request, limit: int, what: str) -> dict[str, Any] | Response:
    """The body as a JSON object, or the answer that says why not: 415, 413 or 400, in that order."""
    if not is_json_content_type(request.headers.get("content-type", "")):
        return error(415, "unsupported_media_type", f"Send {what} as application/json.")
    try:
        body = await read_body(request, limit)
    except BodyTooLarge:
        return error(413, "payload_too_large", f"The body must be at most {limit} bytes.")
    except ClientDisconnect:
        return error(400, "client_disconnected", "The request body was not received completely.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return error(400, "malformed_json", "The body is not valid JSON.")
    if not isinstance(data, dict):
        return error(400, "malformed_json", "The body must be a JSON object.")
    return data


async def create_diagnostic(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    data = await json_object(request, settings.max_body_bytes, "the configuration")
    if isinstance(data, Response):
        return data
    try:
        config = parse_config(data)
    except ConfigError as exc:
        # Every problem at once: the schema's, and the unusable values among the fields it did not name.
        named = {e.field for e in exc.errors}
        return field_errors([e.to_dict() for e in exc.errors] + [p.to_dict() for p in input_problems(data, skip=named)])
    except (TypeError, ValueError, OverflowError) as exc:
        # A value parse_config did not foresee (e.g. port "²": isdigit() but not int()): still the
        # client's input, so a 422, never a 500. Logged by type only, to get the schema fixed.
        log.warning("config_parse_unexpected", error_type=type(exc).__name__)
        return field_errors([{"field": "body", "message": "a value has an unexpected form; check each field"}])
    # Every problem at once, each under its field: what is unusable, what the policy refuses, what only the
    # operator can allow.
    denied = ([p.to_dict() for p in input_problems(data)] + policy_errors(services, config)
              + permission_errors(services, config))
    if denied:
        return field_errors(denied)
    if config.helo_name is None:
        config = dataclasses.replace(config, helo_name=settings.helo_name)

    client = request_client(request)
    host_key = target_host_key(config.host)
    slot: str | None = None
    if services.shared_admission is not None:
        admitted = await admit_shared(services, client, host_key, config)
        if isinstance(admitted, Response):
            return admitted
        slot = admitted
    else:
        refused = await admit(request, services, client, host_key, config)
        if refused is not None:
            return refused
    run_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(run_id=run_id)
    location = {"Location": f"/api/diagnostics/{run_id}"}

    def admit_addresses(addresses: list[str]) -> str | None:
        # The host's own key was counted on admission (for an IP literal it is the address's key).
        keys = {address_key(a) for a in addresses} - {host_key}
        wait = services.target_limiter.acquire_all(sorted(keys)) if keys else None
        if wait is None:
            return None
        return f"the per-server rate limit of this service; retry in {retry_after_header(wait)} s"

    def leave() -> None:
        if slot is None:
            services.gate.leave(client)
        else:  # a stream's end, on the event loop: the slot is given back in a worker thread
            release_slot_soon(services, slot)

    if wants(request, "text/event-stream"):
        return EventStreamResponse(
            stream_run(services, config, run_id, admit_addresses), status_code=201, headers=location, on_close=leave
        )
    try:
        answer = await until_disconnect(
            request, lambda: run_and_answer(services, config, run_id, admit_addresses, location)
        )
    finally:
        shared = services.shared_admission
        if slot is None or shared is None:
            leave()
        else:
            with anyio.CancelScope(shield=True):  # given back before the answer, even when cancelled
                await run_in_threadpool(shared.leave, slot)
    if answer is None:
        log.info("run_cancelled", reason="client disconnected")
        # Nobody reads this answer; it exists so the ASGI server has one (nginx logs such a request as 499).
        return error(499, "client_disconnected", "The client left; the run was cancelled.")
    return answer


RATE_LIMITED: Final = {
    "client": "Too many diagnoses from this client; retry later.",
    "target": "Too many diagnoses of this server; retry later.",
    "recipient_domain": "Too many test messages to this recipient domain; retry later.",
}


async def admit(request: Request, services: Services, client: str, host_key: str,
                config: SmtpConfig) -> Response | None:
    """The rate limits and the caps on runs in flight; None when the run may start (it holds a slot).

    Past the cap the request waits in the gate's queue (bounded in places and time). The wait is part of
    the request: a client that hangs up while queued leaves the queue at once. Tokens are taken only once
    the slot is held and every limit still allows it, so a request that waited and was refused spends
    nothing; the limits are also checked before the wait, so a request they refuse holds no place."""
    domain = recipient_domain(config)
    refused = rate_limited(services, client, host_key, domain)
    if refused is not None:
        return refused
    entry = services.gate.enter_now(client)
    if entry is None:  # only a slot is missing: wait for one; a client that hangs up leaves the queue at once
        entry = await until_disconnect(request, lambda: services.gate.enter(client))
        if entry is None:
            log.info("run_cancelled", reason="client disconnected while queued")
            return error(499, "client_disconnected", "The client left while waiting for a run slot.")
    if entry.refused is not None:
        if entry.queued_s is not None:
            log.info("run_queue_timeout", waited_ms=round(entry.queued_s * 1000))
        return busy(services, entry.refused)
    if entry.queued_s is not None:
        log.info("run_queued", waited_ms=round(entry.queued_s * 1000))
        # The buckets may have emptied while this request waited; nothing awaits between check and take.
        refused = rate_limited(services, client, host_key, domain)
        if refused is not None:
            services.gate.leave(client)
            return refused
    services.client_limiter.acquire(client)
    services.target_limiter.acquire(host_key)
    if domain is not None:
        services.recipient_limiter.acquire(domain)
    return None


def rate_limited(services: Services, client: str, host_key: str, domain: str | None) -> Response | None:
    """The 429 when the client, the target or the recipient domain has no token now (none is taken)."""
    waits: list[tuple[float | None, str]] = [
        (services.client_limiter.wait(client), "client"),
        (services.target_limiter.wait(host_key), "target"),
    ]
    if domain is not None:
        waits.append((services.recipient_limiter.wait(domain), "recipient_domain"))
    for wait, limiter in waits:
        if wait is not None:
            return error(429, "rate_limited", RATE_LIMITED[limiter], {"Retry-After": retry_after_header(wait)})
    return None


async def admit_shared(services: Services, client: str, host_key: str, config: SmtpConfig) -> Response | str:
    """`admit` across replicas (DIAG_DB_URL): the same limits, counted in PostgreSQL; the slot when admitted.
    No queue here, a 503 at once past the cap: a slot frees on any replica, so no process hears of it, and
    waiting would mean each waiter polling the admission lock, loading the shared database when it is busiest."""
    assert services.shared_admission is not None
    settings = services.settings
    limits = [Limit("client", settings.rate_limit_per_client, client),
              Limit("target", settings.rate_limit_per_target, host_key)]
    domain = recipient_domain(config)
    if domain is not None:
        limits.append(Limit("recipient_domain", settings.rate_limit_per_recipient_domain, domain))
    admitted = await run_in_threadpool(services.shared_admission.admit, client, limits)
    if admitted.slot is not None:
        return admitted.slot
    if admitted.refused == "rate_limited" and admitted.limiter is not None:
        return error(429, "rate_limited", RATE_LIMITED[admitted.limiter],
                     {"Retry-After": retry_after_header(admitted.wait_s)})
    return busy(services, admitted.refused or "busy")


def release_slot_soon(services: Services, slot: str) -> None:
    assert services.shared_admission is not None
    asyncio.get_running_loop().run_in_executor(None, services.shared_admission.leave, slot)


def recipient_domain(config: SmtpConfig) -> str | None:
    return recipient_domain_key(config.recipient) if config.send_test_message and config.recipient else None


def busy(services: Services, refused: str) -> Response:
    if refused == "client_busy":
        return error(429, "too_many_runs", f"This client already has {services.settings.max_runs_per_client} "
                     "diagnoses running; wait for one to finish.", {"Retry-After": "5"})
    return error(503, "busy", "Too many diagnoses are running; retry shortly.", {"Retry-After": "5"})


async def until_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """`work()`'s result, or None when the client hung up first (the work is then cancelled): a run nobody
    waits for must not hold a slot and a connection to the SMTP server for minutes."""
    result: T | None = None
    async with anyio.create_task_group() as group:

        async def watch_disconnect() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(watch_disconnect)
        result = await work()
        group.cancel_scope.cancel()
    return result


def policy_errors(services: Services, config: SmtpConfig) -> list[dict[str, str]]:
    """What the egress policy refuses before any lookup: the port, the host when it is an IP literal, and
    every DNS server (a DNS query is a connection too: to 169.254.169.254:53 it reaches the metadata service,
    to an internal resolver it reads the internal zone back into the report)."""
    errors: list[dict[str, str]] = []
    reason = services.policy.vet_port(config.port)
    if reason:
        errors.append({"field": "port", "message": f"{reason} on this service; an operator can change the list "
                       "with DIAG_ALLOWED_PORTS"})
    address = parse_ip_literal(config.host)
    if address is not None:
        reason = services.policy.vet_address(str(address))
        if reason:
            errors.append({"field": "host", "message": f"not allowed by this service's egress policy: {reason}"})
    for server in config.dns_servers:
        reason = services.policy.vet_address(server)
        if reason:
            errors.append({"field": "dns_servers", "message": f"not allowed by this service's egress policy: {reason}"})
            break
    return errors


def permission_errors(services: Services, config: SmtpConfig) -> list[dict[str, str]]:
    """What only the operator can allow. The CLI runs as its user and allows all of it."""
    settings = services.settings
    errors: list[dict[str, str]] = []
    if config.send_test_message and not settings.allow_send:
        errors.append({"field": "send_test_message", "message": (
            "sending a test message is turned off on this service: it would let anyone who reaches the service "
            "send mail through your SMTP servers. The operator can turn it on with DIAG_ALLOW_SEND=1. A check "
            "of the recipient (RCPT TO) without sending works as it is.")})
    if config.helo_name is not None and not settings.allow_custom_helo:
        errors.append({"field": "helo_name", "message": (
            f"this service greets as {settings.helo_name!r} (its operator's DIAG_HELO_NAME); a name of your own "
            "is allowed only with DIAG_ALLOW_CUSTOM_HELO=1. Leave the field empty.")})
    if config.dns_servers and not settings.custom_dns_allowed:
        errors.append({"field": "dns_servers", "message": (
            "this service resolves names with its own DNS servers; choosing others is turned off "
            "(DIAG_ALLOW_CUSTOM_DNS=1 turns it on). Leave the field empty.")})
    return errors


async def run_and_answer(
    services: Services,
    config: SmtpConfig,
    run_id: str,
    admit_addresses: Callable[[list[str]], str | None],
    headers: dict[str, str],
) -> Response:
    """The run, then its report saved and its JSON answer built, both in one worker thread: the report as a
    dict and as JSON is the biggest piece of a run's work after the TLS handshake that was left on the event
    loop that every run in flight shares (py-spy, 200 STARTTLS + AUTH runs: ~4 % of the loop; issue 13)."""
    report = await run(config, policy=services.policy, run_id=run_id, admit_addresses=admit_addresses,
                       max_duration_s=services.settings.max_run_s)
    return await run_in_threadpool(_save_and_answer, services, report, headers)


def _save_and_answer(services: Services, report: Report, headers: dict[str, str]) -> Response:
    report = with_origin(report)  # in the thread too: it opens a UDP socket to learn the source address
    content = report.to_dict()
    try:
        # The answer's body, as JSONResponse renders it (UTF-8, NaN refused).
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = None  # JSONResponse below refuses it as it always did, after the report is saved
    # ASCII without DEL is also, byte for byte, the ASCII JSON the store keeps: the report is turned into a
    # dict and JSON once, not twice (~60 us of a worker thread a run, time the event loop may wait behind
    # for the GIL; issue 13).
    same = text is not None and text.isascii() and "\x7f" not in text
    services.store.save(report, encoded=text if same else None)
    if text is None:
        return JSONResponse(content, status_code=201, headers=headers)
    return Response(text.encode("utf-8"), status_code=201, headers=headers, media_type=JSONResponse.media_type)


async def stream_run(
    services: Services, config: SmtpConfig, run_id: str, admit_addresses: Callable[[list[str]], str | None]
) -> AsyncGenerator[tuple[str, dict[str, Any]], None]:
    """The run's events for SSE; the report is saved before the last event goes out."""
    events = run_events(config, policy=services.policy, run_id=run_id, admit_addresses=admit_addresses,
                        max_duration_s=services.settings.max_run_s)
    finished = False
    try:
        async for event in events:
            if isinstance(event, RunFinished):
                event = RunFinished(with_origin(event.report))
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
    if host is not None and len(host) > MAX_HOST_FILTER_LENGTH:
        errors.append({"field": "host", "message": f"must be at most {MAX_HOST_FILTER_LENGTH} characters"})
    limit = LIST_LIMIT_DEFAULT
    raw_limit = params.get("limit")
    if raw_limit:
        if raw_limit.isascii() and raw_limit.isdigit() and 1 <= int(raw_limit) <= LIST_LIMIT_MAX:
            limit = int(raw_limit)
        else:
            errors.append({"field": "limit", "message": f"must be a whole number from 1 to {LIST_LIMIT_MAX}"})
    if errors:
        return field_errors(errors)
    summaries = await run_in_threadpool(lambda: services.store.list(host=host, verdict=verdict, limit=limit))
    return JSONResponse({"items": [s.to_dict() for s in summaries]})


routes = [
    Route("/api/diagnostics", create_diagnostic, methods=["POST"]),
    Route("/api/diagnostics", list_diagnostics, methods=["GET"]),
    Route("/api/diagnostics/{report_id}", get_diagnostic, methods=["GET"]),
]
