"""Real API responses, validated against the OpenAPI document the service serves.

Runs are real (FakeSMTP on loopback, the app over httpx's ASGI transport); the schemas are the document's
own, reached through its paths (status code and media type), so a response that drifts from the document
fails here. The request schema is checked against parse_config: both come from the config field table and
must accept and refuse the same bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from diag.config import ConfigError, parse_config
from diag.service.app import create_app
from diag.service.openapi import openapi_document
from diag.service.settings import Rate
from fake_smtp import FakeSMTP
from tests.service.helpers import api_client, config_for, make_settings, parse_sse

DOCUMENT = openapi_document(token_required=False)


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator for one schema of the document: its $refs resolve against the whole document."""
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator({**DOCUMENT, **schema}, format_checker=FormatChecker())


def response_schema(path: str, method: str, status: int, media: str = "application/json") -> dict[str, Any]:
    schema: dict[str, Any] = DOCUMENT["paths"][path][method]["responses"][str(status)]["content"][media]["schema"]
    return schema


def assert_valid(schema: dict[str, Any], instance: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(schema).iter_errors(instance)]
    assert errors == []


@pytest.fixture
def smtp() -> Any:
    with FakeSMTP() as server:
        yield server


async def test_create_get_and_list_answer_as_documented(tmp_path: Path, smtp: FakeSMTP) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        created = await client.post("/api/diagnostics", json=config_for(smtp.port, username="u", password="p"))
        assert created.status_code == 201
        assert_valid(response_schema("/api/diagnostics", "post", 201), created.json())
        assert created.json()["stages"][0]["status"] == "passed"

        stored = await client.get(created.headers["location"])
        assert stored.status_code == 200
        assert_valid(response_schema("/api/diagnostics/{report_id}", "get", 200), stored.json())

        listed = await client.get("/api/diagnostics", params={"verdict": "invalid"})
        assert listed.status_code == 200 and len(listed.json()["items"]) == 1
        assert_valid(response_schema("/api/diagnostics", "get", 200), listed.json())

        missing = await client.get("/api/diagnostics/0123456789abcdef")
        assert missing.status_code == 404
        assert_valid(response_schema("/api/diagnostics/{report_id}", "get", 404), missing.json())


async def test_field_errors_answer_as_documented(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        refused = await client.post("/api/diagnostics", json={"host": "a\r\nb", "port": 0, "bogus": 1})
        assert refused.status_code == 422
        assert_valid(response_schema("/api/diagnostics", "post", 422), refused.json())
        assert {e["field"] for e in refused.json()["errors"]} == {"host", "port", "from_email", "bogus"}
        bad_query = await client.get("/api/diagnostics", params={"limit": "0"})
        assert bad_query.status_code == 422
        assert_valid(response_schema("/api/diagnostics", "get", 422), bad_query.json())


async def test_rate_limited_answer_is_as_documented(tmp_path: Path, smtp: FakeSMTP) -> None:
    app = create_app(make_settings(tmp_path, rate_limit_per_client=Rate(1, 60.0)))
    async with api_client(app) as client:
        assert (await client.post("/api/diagnostics", json=config_for(smtp.port))).status_code == 201
        limited = await client.post("/api/diagnostics", json=config_for(smtp.port))
    assert limited.status_code == 429
    assert_valid(response_schema("/api/diagnostics", "post", 429), limited.json())
    documented = DOCUMENT["paths"]["/api/diagnostics"]["post"]["responses"]["429"]["headers"]
    assert_valid(documented["Retry-After"]["schema"], int(limited.headers["retry-after"]))


async def test_event_stream_sends_the_documented_events(tmp_path: Path, smtp: FakeSMTP) -> None:
    stream = DOCUMENT["paths"]["/api/diagnostics"]["post"]["responses"]["201"]["content"]["text/event-stream"]
    events_schemas: dict[str, dict[str, Any]] = stream["x-events"]
    async with api_client(create_app(make_settings(tmp_path))) as client:
        response = await client.post(
            "/api/diagnostics", json=config_for(smtp.port), headers={"accept": "text/event-stream"}
        )
    assert response.status_code == 201
    events = parse_sse(response.text)
    assert {name for name, _ in events} == set(events_schemas)
    for name, data in events:
        assert_valid(events_schemas[name], data)


def _parse_accepts(body: dict[str, Any]) -> bool:
    try:
        parse_config(body)
    except ConfigError:
        return False
    return True


BASE: dict[str, Any] = {"host": "smtp.example.com", "port": 587, "from_email": "a@example.com"}


@pytest.mark.parametrize(
    "body",
    [
        BASE,
        {**BASE, "port": "587"},
        {**BASE, "port": " 25 "},
        {**BASE, "port": "0"},
        {**BASE, "port": "99999"},
        {**BASE, "port": 70000},
        {**BASE, "port": True},
        {**BASE, "port": "25a"},
        {**BASE, "host": ""},
        {**BASE, "host": "   "},  # well-formed data: the config stage says what is wrong with it
        {**BASE, "host": "a\nb"},
        {**BASE, "host": "x" * 1025},
        {**BASE, "username": None, "password": ""},
        {**BASE, "username": 5},
        {**BASE, "password": "p\x00"},
        {**BASE, "tls_mode": "ssl"},
        {**BASE, "tls_mode": None},
        {**BASE, "timeout_s": 0.05},
        {**BASE, "timeout_s": 120},
        {**BASE, "timeout_s": True},
        {**BASE, "dns_servers": ["192.0.2.53", "2001:db8::53"]},
        {**BASE, "dns_servers": "192.0.2.53"},
        {**BASE, "dns_servers": ["192.0.2.53"] * 9},
        {**BASE, "dns_servers": ["not-an-ip"]},
        {**BASE, "dns_servers": [2130706433]},
        {**BASE, "send_test_message": True},
        {**BASE, "send_test_message": True, "recipient": ""},
        {**BASE, "send_test_message": True, "recipient": "r@example.com"},
        {**BASE, "insecure_skip_tls_verify": "yes"},
        {**BASE, "helo_name": "client.example.com"},
        {**BASE, "helo_name": "[192.0.2.1]"},
        {**BASE, "helo_name": "not a name"},
        {**BASE, "helo_name": "-bad-.example"},
        {**BASE, "ca_bundle": "no certificate here"},
        {**BASE, "unknown": 1},
    ],
)
def test_request_schema_accepts_exactly_what_parse_config_accepts(body: dict[str, Any]) -> None:
    schema_accepts = validator(DOCUMENT["components"]["schemas"]["SmtpConfig"]).is_valid(body)
    assert schema_accepts == _parse_accepts(body)
