"""SMTP command injection: CR, LF, NUL and header-injection payloads in every text field are refused by
the API (422 naming the field), the CLI (exit 2, one line on stderr) and the runner itself (a config built
by hand fails the config stage), and the FakeSMTP started for the test sees no connection at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diag.config import SmtpConfig, TlsMode
from diag.report import Status
from diag.runner import run
from diag.secret import Secret
from diag.service.app import create_app
from fake_smtp import FakeSMTP
from tests.security import FROM, Api, loopback_dns, loopback_settings, smtp_connections

FIELDS = ("host", "from_email", "username", "password", "recipient", "helo_name")
LINE_BREAKING = {
    "CR": "a@b.c\rRCPT TO:<x@y.z>",
    "LF": "a@b.c\nRCPT TO:<x@y.z>",
    "CRLF": "a@b.c\r\nRCPT TO:<x@y.z>",
    "NUL": "a@b.c\x00x",
    "RCPT injection": "a@b.c\r\nRCPT TO:<x@y.z>",
    "end of DATA": "x\r\n.\r\nMAIL FROM:<evil>",
    "header injection": "ops@example.net\r\nBcc: x@y",
    "bare CR at the end": "ops@example.net\r",
}
PASSWORD_ENV = "SMTP_DIAG_TEST_PASSWORD"


def valid_body(port: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "from_email": FROM,
        "username": "user",
        "password": "password",
        "recipient": "ops@example.net",
        "helo_name": "client.example",
        "tls_mode": "none",
        "timeout_s": 2,
    }


@pytest.fixture
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_smtp: FakeSMTP) -> Iterator[Api]:
    # A custom EHLO name is allowed here: its field must reach the checks that refuse line breaks in it.
    settings = loopback_settings(tmp_path, fake_smtp.port, allow_custom_helo=True)
    with loopback_dns(monkeypatch, tmp_path), Api(create_app(settings)) as client:
        yield client


def test_the_connection_count_sees_a_clean_run(api: Api, fake_smtp: FakeSMTP) -> None:
    """The control: the same body without a payload does reach the server, and is counted."""
    with smtp_connections() as connections:
        response = api.request("POST", "/api/diagnostics", json=valid_body(fake_smtp.port))
    assert response.status_code == 201, response.text
    assert connections() == 1


@pytest.mark.parametrize("payload", list(LINE_BREAKING.values()), ids=list(LINE_BREAKING))
@pytest.mark.parametrize("field", FIELDS)
def test_api_refuses_line_breaks(api: Api, fake_smtp: FakeSMTP, field: str, payload: str) -> None:
    body = {**valid_body(fake_smtp.port), field: payload}
    with smtp_connections() as connections:
        response = api.request("POST", "/api/diagnostics", json=body)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert payload not in response.text  # the error names the field; it does not echo the value
    assert connections() == 0
    assert fake_smtp.messages == []


@pytest.mark.parametrize("field", ["host", "from_email", "recipient"])
def test_header_text_without_line_breaks_is_refused_under_its_field(
    api: Api, fake_smtp: FakeSMTP, field: str
) -> None:
    """'Bcc: x@y' cannot inject anything without a line break, but it is no host or address either: a 422
    under its field before any run (diag.input_problems), and no connection."""
    body = {**valid_body(fake_smtp.port), field: "Bcc: x@y"}
    with smtp_connections() as connections:
        response = api.request("POST", "/api/diagnostics", json=body)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert connections() == 0


def cli(args: list[str], *, password: str = "password") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, PASSWORD_ENV: password, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "diag", "check", *args],
        capture_output=True, text=True, timeout=30, check=False, env=env,
    )  # fmt: skip


def cli_args(port: int, **values: str) -> tuple[list[str], str]:
    fields = {
        "host": "127.0.0.1", "from_email": FROM, "username": "user", "recipient": "ops@example.net",
        "helo_name": "client.example", **values,
    }  # fmt: skip
    args = ["--profile", "generic", "--port", str(port), "--tls-mode", "none", "--timeout", "2",
            "--password-env", PASSWORD_ENV]
    for name, value in fields.items():
        if name != "password":
            args += ["--" + name.replace("_", "-"), value]
    return args, fields.get("password", "password")


def assert_usage_error(result: subprocess.CompletedProcess[str], flag: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("smtp-diag: error: "), result.stderr
    assert flag in lines[0], lines[0]
    assert "Traceback" not in result.stderr


# argv and the environment cannot carry NUL (exec refuses it): NUL is tested through --password-stdin.
CLI_PAYLOADS = {"CRLF RCPT": "a@b.c\r\nRCPT TO:<x@y.z>", "end of DATA": "x\r\n.\r\nMAIL FROM:<evil>",
                "CR": "a\rb", "LF": "a\nb"}


@pytest.mark.parametrize("payload", list(CLI_PAYLOADS.values()), ids=list(CLI_PAYLOADS))
@pytest.mark.parametrize("field", FIELDS)
def test_cli_refuses_line_breaks(fake_smtp: FakeSMTP, field: str, payload: str) -> None:
    args, password = cli_args(fake_smtp.port, **{field: payload})
    with smtp_connections() as connections:
        result = cli(args, password=password)
    assert_usage_error(result, "--password-env" if field == "password" else "--" + field.replace("_", "-"))
    assert connections() == 0


@pytest.mark.parametrize("password", ["pass\x00word", "pass\rRCPT TO:<x@y.z>"], ids=["NUL", "CR"])
def test_cli_refuses_control_characters_in_a_password_from_stdin(fake_smtp: FakeSMTP, password: str) -> None:
    args, _ = cli_args(fake_smtp.port)
    args = [a for a in args if a not in ("--password-env", PASSWORD_ENV)] + ["--password-stdin"]
    with smtp_connections() as connections:
        result = subprocess.run(
            [sys.executable, "-m", "diag", "check", *args], input=password + "\n",
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert_usage_error(result, "--password-stdin")
    assert connections() == 0


@pytest.mark.parametrize("payload", list(LINE_BREAKING.values()), ids=list(LINE_BREAKING))
@pytest.mark.parametrize("field", FIELDS)
async def test_runner_refuses_a_hand_built_config(fake_smtp: FakeSMTP, field: str, payload: str) -> None:
    """SmtpConfig does not validate: the config stage is the last guard before a socket."""
    values: dict[str, Any] = {
        "host": "127.0.0.1", "port": fake_smtp.port, "from_email": FROM, "username": "user",
        "password": Secret("password"), "recipient": "ops@example.net", "helo_name": "client.example",
        "tls_mode": TlsMode.NONE, "timeout_s": 2.0,
    }  # fmt: skip
    values[field] = Secret(payload) if field == "password" else payload
    with smtp_connections() as connections:
        report = await run(SmtpConfig(**values))
    config_stage = report.stage("config")
    assert config_stage.status is Status.FAILED
    assert config_stage.finding is not None and config_stage.finding.code == "config.forbidden_characters"
    assert field in config_stage.finding.cause
    assert all(s.status is Status.SKIPPED for s in report.stages[1:])
    assert payload not in json.dumps(report.to_dict())
    assert connections() == 0
