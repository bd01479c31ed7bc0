"""A planted password and API token never leave: every output of the CLI and the service is searched for
them, for their base64 forms and for the AUTH PLAIN payload. The runs are real: FakeSMTP with STARTTLS and
AUTH, right and wrong passwords, and one stage made to crash with the password in its message (the
crash is the only stand-in: no real peer can make our own code raise).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from diag import runner
from diag.config import SmtpConfig, TlsMode
from diag.secret import Secret
from diag.service.app import create_app
from diag.service.settings import ApiToken
from diag.stages.base import Outcome, RunContext
from fake_smtp import FakeSMTP
from tests.security import FROM, Api, loopback_dns, loopback_settings

USER = "alice@example.com"
PASSWORD = "pw-5d2b7f-Planted"
WRONG = "pw-0e93aa-WrongPlanted"
TOKEN = "tok-41c7d2-Planted-ApiToken"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


NEEDLES = {
    "password": PASSWORD,
    "wrong password": WRONG,
    "token": TOKEN,
    "base64(password)": b64(PASSWORD),
    "base64(wrong)": b64(WRONG),
    "base64(token)": b64(TOKEN),
    "AUTH PLAIN payload": b64(f"\0{USER}\0{PASSWORD}"),
    "AUTH PLAIN payload (wrong)": b64(f"\0{USER}\0{WRONG}"),
}


def leaks(where: str, data: str | bytes) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [f"{name} in {where}" for name, needle in NEEDLES.items() if needle in text]


@pytest.fixture
def server(fake_smtp_factory: Any) -> FakeSMTP:
    srv: FakeSMTP = fake_smtp_factory(auth="required", tls="starttls", username=USER, password=PASSWORD)
    return srv


def crash_in_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace the auth stage with one that raises an exception quoting the password (a bug of ours)."""

    async def crashing(ctx: RunContext) -> Outcome:
        assert ctx.config.password is not None
        secret = ctx.config.password.reveal()
        raise RuntimeError(f"could not log in with {secret} ({b64(secret)})")

    stages = tuple((name, crashing if name == "auth" else check, needs) for name, check, needs in runner.STAGES)
    monkeypatch.setattr(runner, "STAGES", stages)


# -- CLI ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", [[], ["--json"], ["--markdown"], ["--log-json"], ["--json", "--log-json"]])
@pytest.mark.parametrize("password", [PASSWORD, WRONG], ids=["right password", "wrong password"])
def test_cli_outputs(server: FakeSMTP, json_logs: io.StringIO, output: list[str], password: str) -> None:
    assert server.ca_pem is not None
    env = {**os.environ, "SMTP_PASSWORD": password, "DIAG_API_TOKEN": TOKEN, "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "diag", "check", "--profile", "generic", "--host", "localhost",
         "--port", str(server.port), "--from-email", FROM, "--username", USER, "--password-env", "SMTP_PASSWORD",
         "--tls-mode", "starttls",
         "--ca-file", str(server.ca_pem), "--timeout", "5", *output],
        capture_output=True, text=True, timeout=30, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == (0 if password == PASSWORD else 1), (result.stdout, result.stderr)
    assert USER in result.stdout + result.stderr  # the run did get to AUTH and reports it
    found = leaks("stdout", result.stdout) + leaks("stderr", result.stderr) + leaks("logs", json_logs.getvalue())
    assert found == []


def test_cli_with_a_crashing_stage(server: FakeSMTP, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process (the crash is a monkeypatch), through diag.cli.main with every output mode."""
    from diag import cli

    crash_in_auth(monkeypatch)
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    assert server.ca_pem is not None
    for output in ([], ["--json"], ["--markdown"], ["--log-json"]):
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.main(
            ["check", "--profile", "generic", "--host", "localhost", "--port", str(server.port), "--from-email", FROM,
             "--username", USER,
             "--password-env", "SMTP_PASSWORD", "--tls-mode", "starttls", "--ca-file", str(server.ca_pem), *output],
            stdin=io.StringIO(), stdout=stdout, stderr=stderr,
        )  # fmt: skip
        structlog.reset_defaults()
        assert code == 1
        assert "internal_error" in stdout.getvalue() + stderr.getvalue() or output == [], output
        assert leaks(f"stdout {output}", stdout.getvalue()) + leaks(f"stderr {output}", stderr.getvalue()) == []


# -- service -----------------------------------------------------------------------------------------------


@pytest.fixture
def service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FakeSMTP, json_logs: io.StringIO
) -> Iterator[tuple[Api, Path]]:
    settings = dataclasses.replace(
        loopback_settings(tmp_path / "db", server.port), api_token=ApiToken(TOKEN), log_level="DEBUG"
    )
    with loopback_dns(monkeypatch, tmp_path), Api(create_app(settings)) as api:
        yield api, tmp_path / "db"


def config_body(server: FakeSMTP, password: str) -> dict[str, Any]:
    assert server.ca_pem is not None
    return {
        "host": "localhost", "port": server.port, "from_email": FROM, "username": USER, "password": password,
        "tls_mode": "starttls", "ca_bundle": server.ca_pem.read_text(), "timeout_s": 5,
    }  # fmt: skip


def exercise(api: Api, server: FakeSMTP) -> list[tuple[str, str]]:
    """Every way the service shows a run; (what, body) for each response."""
    auth = {"authorization": f"Bearer {TOKEN}"}
    seen: list[tuple[str, str]] = []
    ids: list[str] = []
    for label, password in (("right", PASSWORD), ("wrong", WRONG)):
        response = api.request("POST", "/api/diagnostics", json=config_body(server, password), headers=auth)
        assert response.status_code == 201, response.text
        auth_stage = next(s for s in response.json()["stages"] if s["name"] == "auth")
        assert auth_stage["status"] == ("passed" if password == PASSWORD else "failed"), auth_stage
        seen.append((f"POST json ({label})", response.text))
        ids.append(response.json()["id"])
        stream = api.request(
            "POST", "/api/diagnostics", json=config_body(server, password),
            headers={**auth, "accept": "text/event-stream"},
        )  # fmt: skip
        assert stream.status_code == 201 and "run_finished" in stream.text
        seen.append((f"POST sse ({label})", stream.text))
    for report_id in ids:
        for what, params, headers in (
            ("GET json", {}, auth),
            ("GET markdown", {"format": "markdown"}, auth),
            ("GET accept markdown", {}, {**auth, "accept": "text/markdown"}),
        ):
            response = api.request("GET", f"/api/diagnostics/{report_id}", params=params, headers=headers)
            assert response.status_code == 200
            seen.append((what, response.text))
        page = api.request("GET", f"/diagnostics/{report_id}")
        assert page.status_code == 200
        seen.append(("page of a report", page.text))
    listed = api.request("GET", "/api/diagnostics", headers=auth)
    assert listed.status_code == 200 and len(listed.json()["items"]) >= 2
    seen.append(("list", listed.text))
    for what, path in (("page", "/"), ("openapi", "/openapi.json"), ("healthz", "/healthz")):
        seen.append((what, api.request("GET", path).text))
    wrong_token = api.request("GET", "/api/diagnostics", headers={"authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert wrong_token.status_code == 401
    seen.append(("401", wrong_token.text))
    return seen


def stored_bytes(db_dir: Path) -> list[tuple[str, bytes]]:
    files = [(p.name, p.read_bytes()) for p in sorted(db_dir.iterdir()) if p.is_file()]
    assert any(name.endswith(".sqlite3") for name, _ in files), files
    return files


def test_service_outputs_and_store(
    service: tuple[Api, Path], server: FakeSMTP, json_logs: io.StringIO
) -> None:
    api, db_dir = service
    seen = exercise(api, server)
    found = [hit for what, text in seen for hit in leaks(what, text)]
    found += [hit for name, data in stored_bytes(db_dir) for hit in leaks(name, data)]
    found += leaks("logs", json_logs.getvalue())
    assert json_logs.getvalue().count("\n") > 10  # the logs were really captured
    assert found == []


def test_service_with_a_crashing_stage(
    service: tuple[Api, Path], server: FakeSMTP, json_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, db_dir = service
    crash_in_auth(monkeypatch)
    response = api.request(
        "POST", "/api/diagnostics", json=config_body(server, PASSWORD), headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 201
    auth_stage = next(s for s in response.json()["stages"] if s["name"] == "auth")
    assert auth_stage["finding"]["code"] == "auth.internal_error"
    found = leaks("response", response.text) + leaks("logs", json_logs.getvalue())
    found += [hit for name, data in stored_bytes(db_dir) for hit in leaks(name, data)]
    assert found == []


async def test_runner_with_a_crashing_stage(
    server: FakeSMTP, json_logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    crash_in_auth(monkeypatch)
    assert server.ca_pem is not None
    config = SmtpConfig(
        host="localhost", port=server.port, from_email=FROM, username=USER, password=Secret(PASSWORD),
        tls_mode=TlsMode.STARTTLS, ca_bundle=server.ca_pem.read_text(), timeout_s=5.0,
    )  # fmt: skip
    report = await runner.run(config)
    assert report.stage("auth").finding is not None
    assert report.stage("auth").finding.code == "auth.internal_error"  # type: ignore[union-attr]
    text = repr(report) + str(report.to_dict()) + repr(config)
    assert leaks("report", text) + leaks("logs", json_logs.getvalue()) == []
