"""A run's answer and its stored body are the same bytes as before they shared one encoding: the HTTP body
as JSONResponse renders it (UTF-8), the stored body as compact ASCII JSON, whatever the server said (pure
functions over a real SQLite store; no peer involved)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import pytest
from starlette.responses import JSONResponse

from diag.origin import with_origin
from diag.report import Report, StageResult, Status, TranscriptLine
from diag.service.api import _save_and_answer
from diag.service.app import create_app
from diag.service.state import Services
from tests.service.helpers import make_settings

SAID = {
    "ascii": "250 smtp.example.test at your service",
    "latin": "250 smtp.example.test à votre service",
    "delete": "250 smtp.example.test \x7f",
    "control": "250 smtp.example.test \x01 \t",
    "astral": "250 smtp.example.test \U0001f600",
    "quotes": '250 "smtp.example.test" \\ ok',
}


def report_saying(text: str, report_id: str) -> Report:
    stage = StageResult("ehlo", Status.PASSED, 1.5, f"The server said {text}", facts={"banner": text},
                        transcript=(TranscriptLine(1.0, "S", text),))
    return Report(id=report_id, started_at="2026-12-04T00:00:00.000Z", duration_ms=2.5,
                  config={"host": "smtp.example.test", "port": 587}, stages=(stage,))


@pytest.fixture
def services(tmp_path: Path) -> Services:
    services: Services = create_app(make_settings(tmp_path)).state.services
    return services


def stored_body(tmp_path: Path, report_id: str) -> str:
    with sqlite3.connect(tmp_path / "reports.sqlite3") as conn:
        (body,) = conn.execute("SELECT body FROM reports WHERE id = ?", (report_id,)).fetchone()
    return str(body)


@pytest.mark.parametrize("case", SAID)
def test_answer_and_stored_body_are_the_bytes_each_always_was(services: Services, tmp_path: Path, case: str) -> None:
    report = report_saying(SAID[case], case)
    answer = _save_and_answer(services, report, {"Location": f"/api/diagnostics/{case}"})
    expected = JSONResponse(with_origin(report).to_dict(), status_code=201,
                            headers={"Location": f"/api/diagnostics/{case}"})
    assert (answer.status_code, answer.body, answer.raw_headers) == (201, expected.body, expected.raw_headers)
    assert stored_body(tmp_path, case) == json.dumps(with_origin(report).to_dict(), separators=(",", ":"))


def test_a_report_no_json_answer_can_carry_is_still_stored_then_refused(services: Services, tmp_path: Path) -> None:
    report = report_saying(SAID["ascii"], "nan")
    stage = dataclasses.replace(report.stages[0], facts={"ratio": float("nan")})
    report = dataclasses.replace(report, stages=(stage,))
    with pytest.raises(ValueError, match="JSON compliant"):
        _save_and_answer(services, report, {})
    assert '"ratio":NaN' in stored_body(tmp_path, "nan")
