"""Inputs the fuzz tests found that once made the service answer 500 or crash a stage: lone surrogates,
non-ASCII digits, HELO names that are no host names. Each must now be a 422 naming the field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag.service.app import create_app
from fake_smtp import FakeSMTP
from tests.security import Api, loopback_dns, loopback_settings
from tests.security.test_api_fuzz import assert_well_formed, post


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_smtp: FakeSMTP) -> Iterator[Api]:
    with loopback_dns(monkeypatch, tmp_path), Api(create_app(loopback_settings(tmp_path, fake_smtp.port))) as api:
        yield api


@pytest.fixture
def base(fake_smtp: FakeSMTP) -> dict[str, Any]:
    return {
        "host": "127.0.0.1", "port": fake_smtp.port, "from_email": "alerts@example.com", "tls_mode": "none",
        "username": "user", "password": "secret-pass", "recipient": "ops@example.net",
    }


@pytest.mark.parametrize("field", ["host", "from_email", "username", "recipient", "helo_name"])
@pytest.mark.parametrize("escaped", [r"\ud800", r"a\udfffb@example.com", r"x\ud83d"], ids=["lone", "low", "cut pair"])
def test_lone_surrogates_in_text_fields(client: Api, base: dict[str, Any], field: str, escaped: str) -> None:
    """JSON may escape a lone surrogate (json.loads accepts it): such a string cannot be encoded as UTF-8,
    so it must be refused (422 naming the field) before it reaches the store, a log line or the socket."""
    body_text = json.dumps({**base, field: "PLACEHOLDER"}).replace("PLACEHOLDER", escaped)
    response = post(client, body_text.encode())
    assert_well_formed(response, set(base))
    assert response.status_code == 422
    assert field in {e["field"] for e in response.json()["errors"]}


@pytest.mark.parametrize("digits", ["²", "①", "5²"])
def test_non_ascii_digits_in_list_limit(client: Api, digits: str) -> None:
    """str.isdigit() is true for "²", int() refuses it."""
    response = client.request("GET", "/api/diagnostics", params={"limit": digits})
    assert response.status_code == 422, response.text
    assert_well_formed(response, {"limit"})


@pytest.mark.parametrize("helo_name", ["é", "ü.example", "a b", "host name.example"])
def test_helo_name_that_is_no_host_name(client: Api, base: dict[str, Any], helo_name: str) -> None:
    """A HELO name that is not an ASCII host name is refused up front (422 naming helo_name) or reported
    as a config finding; it once crashed the ehlo stage (UnicodeEncodeError in aiosmtplib, leaving the
    socket unclosed) or the connect stage (ValueError from aiosmtplib's hostname check)."""
    body = {k: v for k, v in base.items() if k not in ("username", "password")}
    response = post(client, json.dumps({**body, "helo_name": helo_name}).encode())
    assert_well_formed(response, set(body) | {"helo_name"})
    if response.status_code == 422:
        assert {e["field"] for e in response.json()["errors"]} == {"helo_name"}
    else:
        codes = [s["finding"]["code"] for s in response.json()["stages"] if s["finding"]]
        assert not any(code.endswith(".internal_error") for code in codes), codes
