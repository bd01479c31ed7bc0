"""What a run produces: stage results, the report that folds them, and the events every sink consumes.

The JSON schema is `Report.to_dict()`; `Report.from_dict()` reads it back (the store and tests use both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

STAGE_NAMES: Final = ("config", "dns", "connect", "ehlo", "tls", "auth", "mail_from", "rcpt_to", "send")
VERDICTS: Final = ("valid", "invalid")


class Status(StrEnum):
    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Finding:
    code: str  # "<stage>.<kind>", e.g. "auth.bad_credentials"; the rows live in diag.findings
    cause: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "cause": self.cause, "fix": self.fix}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(code=data["code"], cause=data["cause"], fix=data["fix"])


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One line of the conversation. direction: "C" client, "S" server, "*" a note (TLS up, timeout...)."""

    t_ms: float  # since the start of the run
    direction: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"t_ms": round(self.t_ms, 1), "dir": self.direction, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranscriptLine:
        return cls(t_ms=float(data["t_ms"]), direction=data["dir"], text=data["text"])


@dataclass(frozen=True, slots=True)
class StageResult:
    name: str
    status: Status
    duration_ms: float
    summary: str
    facts: dict[str, Any] = field(default_factory=dict)
    finding: Finding | None = None
    transcript: tuple[TranscriptLine, ...] = ()
    # Further warnings of the same stage (anonymous SMTP and Insecure Skip TLS Verify together, say):
    # `finding` is the one most likely to matter, these follow it.
    additional_findings: tuple[Finding, ...] = ()
    # For a failure under a Go profile: the error text the product's client would log (diag.product_log).
    product_log: str | None = None

    @property
    def findings(self) -> tuple[Finding, ...]:
        return ((self.finding,) if self.finding else ()) + self.additional_findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "duration_ms": round(self.duration_ms, 1),
            "summary": self.summary,
            "facts": self.facts,
            "finding": self.finding.to_dict() if self.finding else None,
            "additional_findings": [f.to_dict() for f in self.additional_findings],
            "transcript": [line.to_dict() for line in self.transcript],
            **({"product_log": self.product_log} if self.product_log else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageResult:
        return cls(
            name=data["name"],
            status=Status(data["status"]),
            duration_ms=float(data["duration_ms"]),
            summary=data["summary"],
            facts=dict(data.get("facts") or {}),
            finding=Finding.from_dict(data["finding"]) if data.get("finding") else None,
            transcript=tuple(TranscriptLine.from_dict(t) for t in data.get("transcript") or ()),
            additional_findings=tuple(Finding.from_dict(f) for f in data.get("additional_findings") or ()),
            product_log=data.get("product_log") or None,
        )


@dataclass(frozen=True, slots=True)
class Report:
    id: str
    started_at: str  # ISO 8601, UTC
    duration_ms: float
    config: dict[str, Any]  # SmtpConfig.public_dict(): never the password
    stages: tuple[StageResult, ...]
    # Transcript lines not recorded once the run's transcript was full (diag.transcript.MAX_LINES).
    transcript_lines_dropped: int = 0
    # Where and with what the check ran (tool version, host name, source address, pod), so a shared report
    # says it; empty when nobody recorded it. Filled by the service (diag.origin), never by a stage.
    origin: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "invalid" if any(s.status is Status.FAILED for s in self.stages) else "valid"

    @property
    def valid(self) -> bool:
        return self.verdict == "valid"

    def stage(self, name: str) -> StageResult:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def first_failure(self) -> StageResult | None:
        return next((s for s in self.stages if s.status is Status.FAILED), None)

    @property
    def warnings(self) -> list[StageResult]:
        return [s for s in self.stages if s.status is Status.WARNING]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "verdict": self.verdict,
            "started_at": self.started_at,
            "duration_ms": round(self.duration_ms, 1),
            "config": self.config,
            "stages": [s.to_dict() for s in self.stages],
            "transcript_lines_dropped": self.transcript_lines_dropped,
            **({"origin": self.origin} if self.origin else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(
            id=data["id"],
            started_at=data["started_at"],
            duration_ms=float(data["duration_ms"]),
            config=dict(data["config"]),
            stages=tuple(StageResult.from_dict(s) for s in data["stages"]),
            transcript_lines_dropped=int(data.get("transcript_lines_dropped", 0)),  # absent in older reports
            origin=dict(data.get("origin") or {}),
        )


# Events, in the order a run emits them: StageStarted/StageFinished per stage, then RunFinished once.


@dataclass(frozen=True, slots=True)
class StageStarted:
    run_id: str
    name: str
    kind: str = "stage_started"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "name": self.name}


@dataclass(frozen=True, slots=True)
class StageFinished:
    run_id: str
    result: StageResult
    kind: str = "stage_finished"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, **self.result.to_dict()}


@dataclass(frozen=True, slots=True)
class RunFinished:
    report: Report
    kind: str = "run_finished"

    def to_dict(self) -> dict[str, Any]:
        return self.report.to_dict()


Event = StageStarted | StageFinished | RunFinished
