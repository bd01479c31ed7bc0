"""How much of a run's transcript a stored report keeps: a byte budget per report, shared by its stages.

A verbose server (a long EHLO, a banner with ASCII art) makes a report of ~160 KB, and the store keeps it
for weeks. Before saving, every stage keeps the start and the end of its transcript (the greeting and
the reply that decided the stage) and a note line in place of the middle that says how many lines were
left out, so a person reading the stored report knows it is shortened. Stages share the budget fairly:
a small stage next to a huge one is kept whole, and only stages above the fair share are cut.

Sizes are measured as the JSON the store writes, so the budget is a bound on bytes in the file.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Final

from diag.report import Report, StageResult, TranscriptLine

DEFAULT_MAX_TRANSCRIPT_BYTES: Final = 64 * 1024
MAX_STORED_LINE_CHARS: Final = 512
# Room for the note line in each cut stage, so the budget holds with the notes included.
NOTE_RESERVE_BYTES: Final = 256
HEAD_SHARE: Final = 2 / 3  # of a cut stage's share: the start, where the conversation's context is


def bound_transcripts(report: Report, max_bytes: int = DEFAULT_MAX_TRANSCRIPT_BYTES) -> Report:
    """The report with its transcripts within `max_bytes` of JSON; the same object when they fit."""
    stages = [_with_short_lines(stage) for stage in report.stages]
    if sum(_json_bytes_at_most(line) for stage in stages for line in stage.transcript) <= max_bytes:
        # The common case, every run the service saves: fits for sure, without encoding each line (63 -> ~8 us
        # of a worker thread's time per STARTTLS + AUTH report, time the event loop may wait for the GIL).
        return _with_stages(report, stages)
    sizes = [sum(_json_bytes(line) for line in stage.transcript) for stage in stages]
    if sum(sizes) <= max_bytes:
        return _with_stages(report, stages)
    share = _fair_share(sizes, max_bytes)
    bounded = tuple(
        stage if size <= share else _cut(stage, max(share - NOTE_RESERVE_BYTES, 0), max_bytes)
        for stage, size in zip(stages, sizes, strict=True)
    )
    return dataclasses.replace(report, stages=bounded)


def _with_stages(report: Report, stages: list[StageResult]) -> Report:
    """The report with these stages; the same object when they are its own."""
    return report if stages == list(report.stages) else dataclasses.replace(report, stages=tuple(stages))


def _fair_share(sizes: list[int], budget: int) -> int:
    """The largest per-stage cap such that stages below it keep everything and the total fits (water-filling)."""
    remaining = budget
    ordered = sorted(sizes)
    for index, size in enumerate(ordered):
        share = remaining // (len(ordered) - index)
        if size > share:
            return share
        remaining -= size
    return budget  # unreachable when the total exceeds the budget


def _cut(stage: StageResult, share: int, budget: int) -> StageResult:
    lines = stage.transcript
    head_budget = int(share * HEAD_SHARE)
    head: list[TranscriptLine] = []
    used = 0
    for line in lines:
        cost = _json_bytes(line)
        if used + cost > head_budget:
            break
        head.append(line)
        used += cost
    tail: list[TranscriptLine] = []
    tail_budget = share - used  # whatever the head left over
    used = 0
    for line in reversed(lines[len(head) :]):
        cost = _json_bytes(line)
        if used + cost > tail_budget:
            break
        tail.append(line)
        used += cost
    tail.reverse()
    left_out = lines[len(head) : len(lines) - len(tail)]
    if not left_out:
        return stage
    dropped_bytes = sum(_json_bytes(line) for line in left_out)
    note = TranscriptLine(
        left_out[0].t_ms,
        "*",
        f"… {len(left_out)} of {len(lines)} lines ({dropped_bytes:,} bytes) left out of the stored report,"
        f" which keeps at most {budget // 1024} KB of transcript; the first {len(head)} and last {len(tail)}"
        " lines of this stage are kept",
    )
    return dataclasses.replace(stage, transcript=(*head, note, *tail))


def _with_short_lines(stage: StageResult) -> StageResult:
    """Lines cut at MAX_STORED_LINE_CHARS, as the live transcript does, for reports built elsewhere."""
    if all(len(line.text) <= MAX_STORED_LINE_CHARS for line in stage.transcript):
        return stage
    lines = tuple(
        line
        if len(line.text) <= MAX_STORED_LINE_CHARS
        else dataclasses.replace(line, text=f"{line.text[:MAX_STORED_LINE_CHARS]}… ({len(line.text)} characters)")
        for line in stage.transcript
    )
    return dataclasses.replace(stage, transcript=lines)


# The JSON of a line is `{"t_ms":<number>,"dir":"<escaped>","text":"<escaped>"}` and a comma: 29 bytes
# besides the number and the two strings; a float's repr is at most 24 characters ("-1.7976931348623157e+308").
_LINE_OVERHEAD_AT_MOST: Final = 29 + 24
# ASCII JSON escapes a character in at most 12 bytes: one outside the BMP is one str character, two \uXXXX.
_ESCAPED_BYTES_PER_CHAR_AT_MOST: Final = 12


def _json_bytes_at_most(line: TranscriptLine) -> int:
    """An upper bound of `_json_bytes(line)`, without encoding."""
    return _LINE_OVERHEAD_AT_MOST + _ESCAPED_BYTES_PER_CHAR_AT_MOST * (len(line.direction) + len(line.text))


def _json_bytes(line: TranscriptLine) -> int:
    # As the store serialises it (ASCII JSON, compact), plus the comma between lines.
    return len(json.dumps(line.to_dict(), separators=(",", ":"))) + 1
