"""The stored transcript's byte budget at its edge: a report whose transcript's JSON is exactly the budget is
kept as it is, one byte over is cut, whatever the lines hold (pure functions: no peer involved)."""

from __future__ import annotations

import json

import pytest

from diag.report import Report, StageResult, Status, TranscriptLine
from diag.service.stored_transcript import bound_transcripts

# What costs the most bytes per character in ASCII JSON: a character outside the BMP (two \uXXXX escapes),
# a control character (\u0001), quotes and backslashes, a number with the longest repr.
WORST_CASES = {
    "astral": TranscriptLine(12.5, "S", "250 " + "\U0001f600" * 40),
    "control": TranscriptLine(12.5, "S", "250 " + "\x01" * 40),
    "escapes": TranscriptLine(12.5, "S", '250 "' + "\\" * 40),
    "latin": TranscriptLine(12.5, "S", "250 " + "é" * 40),
    "longest number": TranscriptLine(-1.7976931348623157e308, "", ""),
    "plain": TranscriptLine(3.25, "C", "EHLO client.example"),
}


def report_of(lines: list[TranscriptLine]) -> Report:
    stages = (StageResult("ehlo", Status.PASSED, 1.0, "ok", transcript=tuple(lines)),
              StageResult("auth", Status.PASSED, 1.0, "ok", transcript=tuple(lines[:1])))
    return Report(id="r", started_at="2026-12-04T00:00:00.000Z", duration_ms=2.0, config={}, stages=stages)


def stored_bytes(report: Report) -> int:
    """As the store writes them: compact ASCII JSON, a comma after each line."""
    return sum(len(json.dumps(line.to_dict(), separators=(",", ":"))) + 1
               for stage in report.stages for line in stage.transcript)


@pytest.mark.parametrize("case", WORST_CASES)
def test_a_transcript_of_exactly_the_budget_is_kept_and_one_byte_over_is_cut(case: str) -> None:
    report = report_of([WORST_CASES[case]] * 30)
    exact = stored_bytes(report)
    assert bound_transcripts(report, exact) is report
    cut = bound_transcripts(report, exact - 1)
    assert cut is not report and stored_bytes(cut) <= exact - 1
    assert any(line.direction == "*" and "left out of the stored report" in line.text
               for line in cut.stage("ehlo").transcript)
