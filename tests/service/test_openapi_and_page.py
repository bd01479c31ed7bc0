from __future__ import annotations

import json
import re
from pathlib import Path

from diag.config import CONFIG_FIELDS, KNOWN_FIELDS, TEXT_FIELDS
from diag.service.app import create_app
from tests.service.helpers import api_client, make_settings


async def test_openapi_describes_exactly_the_config_schema(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    schema = document["components"]["schemas"]["SmtpConfig"]
    assert set(schema["properties"]) == set(KNOWN_FIELDS)
    assert set(schema["required"]) == {"host", "port", "from_email"}
    assert schema["additionalProperties"] is False
    for name in set(TEXT_FIELDS) - {"ca_bundle"}:
        pattern = re.compile(schema["properties"][name]["pattern"])
        assert pattern.search("mail.example.com")
        for bad in ("a\rb", "a\nb", "a\x00b"):
            assert pattern.search(bad) is None, (name, bad)
    post = document["paths"]["/api/diagnostics"]["post"]
    assert {"201", "400", "401", "413", "415", "422", "429", "503"} <= set(post["responses"])
    assert "text/event-stream" in post["responses"]["201"]["content"]
    assert set(document["paths"]) == {
        "/api/diagnostics", "/api/diagnostics/{report_id}", "/api/explain", "/healthz", "/readyz"
    }


async def test_page_has_labelled_fields_and_its_own_assets(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        page = await client.get("/")
        assert page.status_code == 200
        html = page.text
        for field, label in (("host", "Outgoing Server"), ("port", "Outgoing Port"), ("from_email", "From Email"),
                             ("username", "Username"), ("password", "Password"),
                             ("insecure_skip_tls_verify", "Insecure Skip TLS Verify")):
            assert f'<label for="{field}">{label}</label>' in html
        assert 'aria-live="polite"' in html
        assert "http://" not in html.replace('href="/openapi.json"', "")  # nothing from elsewhere
        assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self' covers it
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/static/app.js", "/static/app.css"):
            response = await client.get(asset)
            assert response.status_code == 200 and len(response.content) > 1000
        stored = await client.get("/diagnostics/abc123")
        assert stored.status_code == 200 and 'data-report-id="abc123"' in stored.text


async def test_presets_cannot_break_out_of_their_element(tmp_path: Path) -> None:
    presets = [{"key": "x", "label": "</script><script>alert(1)</script>", "description": "<!--", "config": {}}]
    async with api_client(create_app(make_settings(tmp_path), presets=presets)) as client:
        html = (await client.get("/")).text
    data = html.split('id="presets-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data
    assert json.loads(data) == presets


async def test_page_form_and_its_field_list_come_from_the_field_table(tmp_path: Path) -> None:
    async with api_client(create_app(make_settings(tmp_path))) as client:
        html = (await client.get("/")).text
        script = (await client.get("/static/app.js")).text
    data = html.split('id="form-fields">', 1)[1].split("</script>", 1)[0]
    listed = json.loads(data)
    on_page = [f for f in CONFIG_FIELDS if f.form is not None]
    assert [entry["name"] for entry in listed] == [f.name for f in on_page]
    for f, entry in zip(on_page, listed, strict=True):
        assert f'<label for="{f.name}">{f.label}</label>' in html
        assert f'id="{f.name}-error"' in html
        assert entry["advanced"] == f.form.advanced  # type: ignore[union-attr]
        assert entry["refill"] == f.public
    assert not {"password", "ca_bundle"} & {e["name"] for e in listed if e["refill"]}
    # app.js keeps no field list of its own: it names no config field at all.
    assert not [f.name for f in on_page if f'"{f.name}"' in script]
