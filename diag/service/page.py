"""The web page: one template for a new diagnosis and for a stored one; the browser fetches the data.

The page never renders a report on the server: it asks the API (with the token when one is set), so the
page shell itself holds no data and needs no authentication.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from diag.service.state import Services

HERE: Final = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


async def index(request: Request) -> Response:
    return _page(request, report_id=None)


async def stored(request: Request) -> Response:
    return _page(request, report_id=request.path_params["report_id"][:64])


def _page(request: Request, report_id: str | None) -> Response:
    services: Services = request.app.state.services
    # Embedded as JSON data (not script), so the CSP's script-src 'self' still holds. Every "<" is
    # escaped so no value can end the element or open a comment inside it.
    presets = json.dumps(services.presets).replace("<", "\\u003c")
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "presets_json": presets,
            "has_presets": bool(services.presets),
            "token_required": services.settings.api_token is not None,
            "allow_send": services.settings.allow_send,
            "report_id": report_id,
        },
        headers={"cache-control": "no-store"},
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/", index),
        Route("/diagnostics/{report_id}", stored),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
