"""The chaos switch on the inbox HTTP port: read and replace fault rules, address rules and the seed.

    GET /chaos   {"seed": 42, "faults": ["mail_from@0.3=reply:451", ...], "rules": ["rcpt:*@x=550 ...", ...]}
    PUT /chaos   {"faults": [...], "rules": [...], "seed": 42}    every key optional; answers like GET

A PUT is all or nothing: every entry is parsed before anything changes. Bad input gets 422 with
{"error": ..., "field": "faults[2]"}; a body that is not a JSON object, or larger than 64 KiB, gets 400/413.
Replacing the faults restarts their counts (`#N`) and the random sequence (from `seed`, or a fresh one).
It sits behind the same guard as the inbox (Host check, bearer token).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fake_smtp.address_rules import AddressRule, AddressRules, parse_address_rule
from fake_smtp.faults import MAX_FAULTS, MAX_SEED, Fault, FaultPlan, parse_fault

T = TypeVar("T")

MAX_BODY = 64 * 1024


class _Invalid(Exception):
    def __init__(self, field: str, error: str, status: int = 422) -> None:
        super().__init__(error)
        self.field, self.error, self.status = field, error, status


def _state(plan: FaultPlan, rules: AddressRules) -> dict[str, Any]:
    return {"seed": plan.seed, "faults": [str(f) for f in plan.faults], "rules": [str(r) for r in rules.rules]}


def _texts(body: dict[str, Any], key: str) -> list[str] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Invalid(key, f"{key} must be a list of strings")
    if len(value) > MAX_FAULTS:
        raise _Invalid(key, f"at most {MAX_FAULTS} entries")
    return value


def _each(body: dict[str, Any], key: str, parse: Callable[[str], T]) -> list[T] | None:
    """`body[key]`'s texts parsed, or None when absent; a bad one is named by its index (`faults[1]`)."""
    texts = _texts(body, key)
    if texts is None:
        return None
    parsed: list[T] = []
    for index, text in enumerate(texts):
        try:
            parsed.append(parse(text))
        except ValueError as error:
            raise _Invalid(f"{key}[{index}]", str(error)) from None
    return parsed


def _parsed(body: dict[str, Any]) -> tuple[list[Fault] | None, list[AddressRule] | None, int | None]:
    unknown = sorted(set(body) - {"faults", "rules", "seed"})
    if unknown:
        raise _Invalid(unknown[0], f"unknown field {unknown[0]!r}; expected faults, rules, seed")
    faults = _each(body, "faults", parse_fault)
    rules = _each(body, "rules", parse_address_rule)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise _Invalid("seed", f"seed must be a whole number 0-{MAX_SEED}")
    return faults, rules, seed


def chaos_routes(plan: FaultPlan, rules: AddressRules) -> list[Route]:
    async def read(request: Request) -> Response:
        return JSONResponse(_state(plan, rules))

    async def replace(request: Request) -> Response:
        try:
            raw = await _bounded_body(request)
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise _Invalid("body", "the body must be JSON", 400) from None
            if not isinstance(body, dict):
                raise _Invalid("body", "the body must be a JSON object", 400)
            faults, new_rules, seed = _parsed(body)
        except _Invalid as invalid:
            return JSONResponse({"error": invalid.error, "field": invalid.field}, status_code=invalid.status)
        if faults is not None or seed is not None:
            plan.replace(plan.faults if faults is None else faults, seed)
        if new_rules is not None:
            rules.replace(new_rules)
        return JSONResponse(_state(plan, rules))

    return [Route("/chaos", read, methods=["GET"]), Route("/chaos", replace, methods=["PUT"])]


async def _bounded_body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _Invalid("body", f"the body is larger than {MAX_BODY} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)
