"""`POST /api/explain`: the log lines a user pasted, explained (diag/explain.py), as JSON.

The same front door as the rest of the API: content type (415), body size (413), JSON (400), the fields
(422, each named). It opens no socket and reads no file: text in, text out, bounded by the body limit and
by diag.explain's limits (characters, lines, line length), so it can be neither an SSRF nor a DoS. The
pasted text is never logged: only how many lines came in and the codes that came out, and the lines in the
answer are already redacted.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from diag.explain import DEFAULT_PROFILE, MAX_TEXT_CHARS, ExplainInputError, explain_text
from diag.logging import get_logger
from diag.service.api import field_errors, json_object
from diag.service.state import Services

log = get_logger("diag.service")

FIELDS: Final = frozenset({"text", "profile"})


async def explain(request: Request) -> Response:
    services: Services = request.app.state.services
    limit = services.settings.max_body_bytes
    data = await json_object(request, limit, "the log lines")
    if isinstance(data, Response):
        return data
    problems = _field_problems(data)
    if problems:
        return field_errors(problems)
    try:
        answers = explain_text(data["text"], data.get("profile", DEFAULT_PROFILE))
    except ExplainInputError as exc:
        return field_errors([{"field": exc.field, "message": exc.message}])
    log.info("log_lines_explained", lines=len(answers), codes=[a.code for a in answers])
    return JSONResponse({
        "recognised": any(a.known for a in answers),
        "explanations": [a.to_dict() for a in answers],
    })


def _field_problems(data: dict[str, Any]) -> list[dict[str, str]]:
    problems = [{"field": _printable(name), "message": "unknown field"} for name in sorted(set(data) - FIELDS, key=str)]
    text = data.get("text")
    if not isinstance(text, str):
        problems.append({"field": "text", "message": f"is required: the log lines as one string (at most "
                         f"{MAX_TEXT_CHARS} characters)"})
    if "profile" in data and not isinstance(data["profile"], str):
        problems.append({"field": "profile", "message": "must be a string"})
    return problems


def _printable(name: str) -> str:
    """An unknown field's name as an answer can show it: bounded, and never a lone surrogate."""
    return name[:64].encode("utf-8", "backslashreplace").decode("utf-8")


routes = [Route("/api/explain", explain, methods=["POST"])]
