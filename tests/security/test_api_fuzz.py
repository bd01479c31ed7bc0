"""Fuzzing the HTTP API in-process (httpx ASGITransport) with hypothesis: no input reaches a 5xx, and
every 4xx is JSON that says what is wrong (422: `errors[].field` naming the field).

Fuzzed configurations that pass the schema really run, but only against loopback: the policy allows
127.0.0.1 and the FakeSMTP's port only, and an example is dropped (`assume`) when its DNS servers or host
could send a query off the machine.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from diag.config import KNOWN_FIELDS, ConfigError, parse_config
from diag.policy import parse_ip_literal
from diag.service.app import create_app
from fake_smtp import FakeSMTP
from tests.security import FROM, Api, loopback_dns, loopback_settings

EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MISSING = object()

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=80)
    | st.sampled_from(["", "127.0.0.1", "localhost", "none", "implicit", "auto", "25", " 587 ", "1e3"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_smtp: FakeSMTP) -> Iterator[Api]:
    with loopback_dns(monkeypatch, tmp_path), Api(create_app(loopback_settings(tmp_path, fake_smtp.port))) as api:
        yield api


@pytest.fixture
def base(fake_smtp: FakeSMTP) -> dict[str, Any]:
    """A valid body that runs against the FakeSMTP (anonymous, plaintext) in a few milliseconds."""
    return {
        "host": "127.0.0.1",
        "port": fake_smtp.port,
        "from_email": FROM,
        "tls_mode": "none",
        "timeout_s": 2,
        "dns_servers": ["127.0.0.1"],
    }


def stays_on_loopback(body: dict[str, Any]) -> bool:
    """Whether running this body (if it is valid) can only ever talk to 127.0.0.1."""
    try:
        config = parse_config(body)
    except ConfigError:
        return True
    if any(parse_ip_literal(s) is None or not parse_ip_literal(s).is_loopback for s in config.dns_servers):  # type: ignore[union-attr]
        return False
    # A name with no DNS servers given would fall back to the system resolver: not on loopback.
    return bool(config.dns_servers) or parse_ip_literal(config.host) is not None


def assert_well_formed(response: httpx.Response, body_fields: set[str]) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code < 400:
        return
    assert response.headers["content-type"].startswith("application/json"), response.headers
    payload = response.json()
    if response.status_code == 422:
        errors = payload["errors"]
        assert isinstance(errors, list) and errors
        for item in errors:
            assert isinstance(item["field"], str) and item["field"], item
            assert isinstance(item["message"], str) and item["message"], item
            assert item["field"] in body_fields | KNOWN_FIELDS, item
    else:
        assert isinstance(payload["error"], str) and payload["error"]
        assert isinstance(payload["message"], str) and payload["message"]


def post(client: Api, content: bytes, content_type: str = "application/json") -> httpx.Response:
    return client.request("POST", "/api/diagnostics", content=content, headers={"content-type": content_type})


FUZZED_FIELDS = sorted(KNOWN_FIELDS)


@EXAMPLES
@given(field=st.sampled_from(FUZZED_FIELDS), value=json_values | st.just(MISSING))
def test_any_value_in_any_field(client: Api, base: dict[str, Any], field: str, value: Any) -> None:
    body = dict(base)
    if value is MISSING:
        body.pop(field, None)
    else:
        body[field] = value
    assume(stays_on_loopback(body))
    response = post(client, json.dumps(body).encode())
    assert_well_formed(response, set(body))
    if response.status_code == 422:
        named = {e["field"] for e in response.json()["errors"]}
        # send_test_message=true is refused on its partner field, the missing recipient
        assert field in named or (field == "send_test_message" and "recipient" in named), (field, named)
    elif response.status_code == 201:
        assert response.json()["verdict"] in ("valid", "invalid")


@EXAMPLES
@given(extra=st.dictionaries(st.text(min_size=1, max_size=20), json_values, min_size=1, max_size=4))
def test_unknown_fields_are_named(client: Api, base: dict[str, Any], extra: dict[str, Any]) -> None:
    unknown = {k: v for k, v in extra.items() if k not in KNOWN_FIELDS}
    assume(unknown)
    body = {**base, **unknown}
    response = post(client, json.dumps(body).encode())
    assert response.status_code == 422
    assert_well_formed(response, set(body))
    assert set(unknown) <= {e["field"] for e in response.json()["errors"]}


@EXAMPLES
@given(value=json_values.filter(lambda v: not isinstance(v, dict)))
def test_non_object_bodies(client: Api, value: Any) -> None:
    response = post(client, json.dumps(value).encode())
    assert response.status_code == 400
    assert_well_formed(response, set())


@EXAMPLES
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes(client: Api, raw: bytes) -> None:
    response = post(client, raw)
    assert_well_formed(response, set())
    assert response.status_code in (400, 422) or (response.status_code == 201 and raw.strip().startswith(b"{"))


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe{}", b'{"host": "\xc3\x28"}', b'{"host": "\xed\xa0\x80"}', b"\x00", b'{"a":' * 5000, b"[" * 100000],
    ids=["bom-ish", "invalid utf-8", "surrogate", "nul", "deep object", "deep array (over the size limit)"],
)
def test_invalid_utf8_and_deep_nesting(client: Api, raw: bytes) -> None:
    response = post(client, raw)
    # json.loads lets UTF-8-encoded surrogates through: then the schema judges the (incomplete) object.
    assert response.status_code in (400, 413, 422), response.text[:200]
    assert_well_formed(response, {"host"})


def test_huge_body_with_content_length(client: Api, base: dict[str, Any]) -> None:
    body = json.dumps({**base, "helo_name": "x" * (1024 * 1024)}).encode()
    response = post(client, body)
    assert response.status_code == 413
    assert_well_formed(response, set())


def test_huge_body_streamed_without_content_length(client: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"host": "'
        for _ in range(64):
            yield b"x" * 16384
        yield b'"}'

    response = client.request(
        "POST", "/api/diagnostics", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert_well_formed(response, set())


@EXAMPLES
@given(content_type=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_any_content_type(client: Api, base: dict[str, Any], content_type: str) -> None:
    response = post(client, json.dumps(base).encode(), content_type)
    assert_well_formed(response, set(base))
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        assert response.status_code == 415


@EXAMPLES
@given(
    params=st.dictionaries(
        st.sampled_from(["verdict", "host", "limit", "format", "x"]),
        st.text(max_size=40) | st.sampled_from(["1", "500", "501", "0", "²"]),
        max_size=4,
    ),
    report_id=st.text(max_size=80),
)
def test_read_endpoints(client: Api, params: dict[str, str], report_id: str) -> None:
    listed = client.request("GET", "/api/diagnostics", params=params)
    assert_well_formed(listed, set(params))
    path = "/api/diagnostics/" + urllib.parse.quote(report_id, safe="")
    one = client.request("GET", path, params={k: v for k, v in params.items() if k == "format"})
    # No redirects: an id of "" or "/" is a path the API does not serve, a JSON 404.
    assert one.status_code in (200, 404, 422), one.status_code
    assert_well_formed(one, {"format"})


@pytest.mark.parametrize("report_id", ["", "%2F", "%2F%2F", "a%2Fb"])
def test_odd_report_ids_are_json_404s_not_redirects(client: Api, report_id: str) -> None:
    response = client.request("GET", "/api/diagnostics/" + report_id)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("digits", ["²", "①", "5²"])
def test_non_ascii_digits_in_port(client: Api, base: dict[str, Any], digits: str) -> None:
    response = post(client, json.dumps({**base, "port": digits}).encode())
    assert response.status_code == 422, response.text
    assert_well_formed(response, set(base))
    assert {e["field"] for e in response.json()["errors"]} == {"port"}
