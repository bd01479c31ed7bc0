"""POST /api/explain: answers as the OpenAPI document says, refuses bad input with a 4xx naming the field,
and never lets a pasted password reach the answer or the logs. It opens no socket: no peer is involved.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from diag.explain import MAX_LINES
from diag.service.app import create_app
from tests.service.helpers import api_client, make_settings
from tests.service.test_api_schema import assert_valid, response_schema

PLANTED = "pw-83d-Planted"


async def post(tmp_path: Path, body: Any, **kwargs: Any) -> Any:
    async with api_client(create_app(make_settings(tmp_path, **kwargs))) as client:
        if isinstance(body, bytes | str):
            return await client.post("/api/explain", content=body, headers={"content-type": "application/json"})
        return await client.post("/api/explain", json=body)


async def test_lines_are_explained_as_documented(tmp_path: Path) -> None:
    text = 'level=error error="dial tcp 10.0.0.5:587: i/o timeout"\n\nwhatever else\n'
    answer = await post(tmp_path, {"text": text, "profile": "generic"})
    assert answer.status_code == 200
    assert_valid(response_schema("/api/explain", "post", 200), answer.json())
    body = answer.json()
    assert body["recognised"] is True
    assert [e["code"] for e in body["explanations"]] == ["connect.timeout", None]
    assert body["explanations"][0]["confirm"]["config"] == {"host": "10.0.0.5", "port": 587}


async def test_nothing_recognised_is_still_a_200_that_says_so(tmp_path: Path) -> None:
    answer = await post(tmp_path, {"text": "all fine here"})
    assert answer.status_code == 200 and answer.json()["recognised"] is False


async def test_a_pasted_password_reaches_neither_the_answer_nor_the_logs(
    tmp_path: Path, json_logs: io.StringIO
) -> None:
    text = f'msg="smtp" password={PLANTED} error="535 5.7.8 Error: authentication failed"'
    answer = await post(tmp_path, {"text": text})
    assert answer.status_code == 200
    assert PLANTED not in answer.text
    assert answer.json()["explanations"][0]["code"] == "auth.bad_credentials"
    assert "log_lines_explained" in json_logs.getvalue() and PLANTED not in json_logs.getvalue()


@pytest.mark.parametrize(("body", "field"), [
    ({}, "text"),
    ({"text": 5}, "text"),
    ({"text": ""}, "text"),
    ({"text": "EOF\n" * (MAX_LINES + 1)}, "text"),
    ({"text": "x" * 40_000}, "text"),
    ({"text": "EOF", "profile": "nope"}, "profile"),
    ({"text": "EOF", "profile": None}, "profile"),
    ({"text": "EOF", "host": "10.0.0.1"}, "host"),
    ({"text": "EOF", "\ud800": 1}, "\\ud800"),
])
async def test_bad_input_is_a_422_naming_the_field(tmp_path: Path, body: dict[str, Any], field: str) -> None:
    answer = await post(tmp_path, json.dumps(body))
    assert answer.status_code == 422
    assert_valid(response_schema("/api/explain", "post", 422), answer.json())
    assert field in [e["field"] for e in answer.json()["errors"]]


@pytest.mark.parametrize(("body", "status"), [("[1]", 400), ("{", 400), ('"text"', 400)])
async def test_a_body_that_is_no_json_object_is_a_400(tmp_path: Path, body: str, status: int) -> None:
    answer = await post(tmp_path, body)
    assert answer.status_code == status and answer.json()["error"] == "malformed_json"


async def test_wrong_content_type_and_oversized_bodies_are_refused(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path, max_body_bytes=1024))) as client:
        plain = await client.post("/api/explain", content='{"text":"EOF"}', headers={"content-type": "text/plain"})
        assert plain.status_code == 415 and plain.json()["error"] == "unsupported_media_type"
        big = await client.post("/api/explain", json={"text": "EOF " * 1000})
        assert big.status_code == 413 and big.json()["error"] == "payload_too_large"


async def test_the_token_guards_it_like_every_api_route(tmp_path: Path) -> None:
    from diag.service.settings import ApiToken

    answer = await post(tmp_path, {"text": "EOF"}, api_token=ApiToken("t0ken-for-test-only-123456"))
    assert answer.status_code == 401
