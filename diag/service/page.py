"""The web page: one template for a new diagnosis and for a stored one; the browser fetches the data.

With JavaScript the page asks the API for a report (with the token when one is set). Without it, a shared
link still shows the stored report, rendered here inside <noscript>, but only when the service needs no
token (a page without JavaScript cannot send one, and the shell itself must stay free of data behind it).
The form posts (never a GET: the password would land in the URL); a post runs nothing and gets the page.

The form's fields come from the config field table (diag/config.py): the template renders each row's
control, and app.js reads the list of fields from a JSON data element instead of keeping its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from diag.config import CONFIG_FIELDS
from diag.fields import Choice, Field
from diag.profiles import Profile, profile_of
from diag.report import Report, Status
from diag.service.api import REPORT_ID
from diag.service.settings import Settings
from diag.service.state import Services

HERE: Final = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


async def index(request: Request) -> Response:
    return _page(request, report_id=None)


async def posted(request: Request) -> Response:
    """The form without JavaScript: nothing is read from the body and nothing runs (the page says why)."""
    return _page(request, report_id=None, status_code=200)


async def stored(request: Request) -> Response:
    services: Services = request.app.state.services
    report_id = request.path_params["report_id"][:64]
    report = None
    if services.settings.api_token is None and REPORT_ID.match(report_id):
        report = await run_in_threadpool(services.store.get, report_id)
    return _page(request, report_id=report_id, report=report)


FORM_FIELDS: Final = tuple(f for f in CONFIG_FIELDS if f.form is not None)


def form_rows(advanced: bool) -> list[list[Field]]:
    """The form's fields in table order; fields that share a `row` sit together at the first one's place."""
    rows: dict[str, list[Field]] = {}
    for f in FORM_FIELDS:
        assert f.form is not None
        if f.form.advanced is advanced:
            rows.setdefault(f.form.row or f.name, []).append(f)
    return list(rows.values())


def denied_fields(settings: Settings) -> set[str]:
    """Fields whose control is disabled because the service setting they need is off."""
    return {f.name for f in FORM_FIELDS if f.form is not None and f.form.gate and not getattr(settings, f.form.gate)}


def data_json(value: Any) -> str:
    # Embedded as JSON data (not script), so the CSP's script-src 'self' still holds. Every "<" is
    # escaped so no value can end the element or open a comment inside it.
    return json.dumps(value).replace("<", "\\u003c")


# Each field with the profiles whose form has it: app.js hides (and does not send) the others; the field
# that chooses the profile says so, since app.js names no config field.
FIELDS_JSON: Final = data_json([
    {
        **f.page_entry(),
        "profiles": [p.value for p in Profile if profile_of(p).has_field(f.name)],
        "chooses_profile": isinstance(f.value, Choice) and f.value.choices is Profile,
    }
    for f in FORM_FIELDS
])


async def history(request: Request) -> Response:
    """Past runs, listed by the browser from the API (with the token when one is set)."""
    services: Services = request.app.state.services
    return templates.TemplateResponse(
        request,
        "history.html",
        {"token_required": services.settings.api_token is not None},
        headers={"cache-control": "no-store"},
    )


def report_view(report: Report) -> dict[str, Any]:
    """What the no-JavaScript view of a stored report shows, answer first (Jinja escapes every value)."""
    failed = report.first_failure
    warnings = [(s.name, f) for s in report.warnings for f in s.findings]
    if failed is not None:
        warnings += [(failed.name, f) for f in failed.additional_findings]
    return {
        "verdict": report.verdict,
        "title": f"Failed at {failed.name}" if failed else "Configuration is valid",
        "failed": failed,
        "warnings": warnings,
        "stages": [s for s in report.stages if s.status is not Status.SKIPPED],
        "started_at": report.started_at,
        "where": f"{report.config.get('host', '?')}:{report.config.get('port', '?')}",
        "origin": report.origin,
    }


def _page(request: Request, report_id: str | None, report: Report | None = None, status_code: int = 200) -> Response:
    services: Services = request.app.state.services
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "presets_json": data_json(services.presets),
            "fields_json": FIELDS_JSON,
            "main_rows": form_rows(advanced=False),
            "advanced_rows": form_rows(advanced=True),
            "denied": denied_fields(services.settings),
            "has_presets": bool(services.presets),
            "token_required": services.settings.api_token is not None,
            "allow_send": services.settings.allow_send,
            "report_id": report_id,
            "report": report_view(report) if report is not None else None,
        },
        status_code=status_code,
        headers={"cache-control": "no-store"},
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/", index),
        Route("/", posted, methods=["POST"]),
        Route("/history", history),
        Route("/diagnostics/{report_id}", stored),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
