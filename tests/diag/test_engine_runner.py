"""The runner as a whole: events, the report's JSON, bounded steps, crashes, and secrets that never leak.

Stalls and disconnects come from FakeSMTP fault rules at every step of a STARTTLS + AUTH session with a
trusted certificate; the time bound is read from the report (the stage's duration), never slept for.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from structlog.testing import capture_logs

import diag.probe
import diag.runner
from diag.config import SmtpConfig, parse_config
from diag.probe import ProbeError
from diag.render import render_summary, to_markdown
from diag.report import Report, RunFinished, StageFinished, StageStarted, Status
from diag.runner import run, run_events
from diag.stages.base import Outcome, RunContext
from diag.transcript import MAX_LINES
from fake_smtp import FakeSMTP, parse_fault
from tests import certs
from tests.diag.conftest import (
    PASSWORD,
    RECIPIENT,
    SHORT_TIMEOUT_S,
    STAGES,
    USER,
    assert_failed_at,
    config_for,
    tls_server,
)
from tests.peer import Peer, Reader, SmtpScript, Writer, send

Session = Callable[..., tuple[FakeSMTP, SmtpConfig]]


@pytest.fixture
def session(fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path) -> Session:
    """A STARTTLS + AUTH server with a trusted certificate, and a config that goes through every stage."""
    files = certs.ca_issued(cert_dir)

    def start(
        *faults: str, password: str = PASSWORD, server_password: str = PASSWORD, **config: Any
    ) -> tuple[FakeSMTP, SmtpConfig]:
        srv = tls_server(
            fake_smtp_factory, files, tls="starttls", auth="required", username=USER, password=server_password,
            faults=[parse_fault(f) for f in faults],
        )  # fmt: skip
        config.setdefault("timeout_s", SHORT_TIMEOUT_S)
        return srv, config_for(
            srv.port, username=USER, password=password, ca_bundle=files.ca_pem, recipient=RECIPIENT,
            send_test_message=True, **config,
        )  # fmt: skip

    return start


# -- events and the report -----------------------------------------------------------------------------


async def test_events_come_in_stage_order_then_run_finished(session: Session) -> None:
    srv, config = session()
    events = [event async for event in run_events(config, run_id="run-1")]
    assert len(events) == 2 * len(STAGES) + 1
    for i, name in enumerate(STAGES):
        started, finished = events[2 * i], events[2 * i + 1]
        assert isinstance(started, StageStarted) and started.name == name and started.run_id == "run-1"
        assert isinstance(finished, StageFinished) and finished.result.name == name
    last = events[-1]
    assert isinstance(last, RunFinished)
    assert last.report.id == "run-1" and last.report.verdict == "valid"
    assert [s.name for s in last.report.stages] == list(STAGES)
    assert all(s.status is Status.PASSED for s in last.report.stages)
    assert [e.result for e in events if isinstance(e, StageFinished)] == list(last.report.stages)
    assert len(srv.messages) == 1


async def test_events_on_failure_still_cover_every_stage(session: Session) -> None:
    _, config = session("auth=reply:535")
    events = [event async for event in run_events(config)]
    names = [e.result.name for e in events if isinstance(e, StageFinished)]
    assert names == list(STAGES)
    assert isinstance(events[-1], RunFinished) and events[-1].report.verdict == "invalid"


async def test_report_round_trips_through_json(session: Session) -> None:
    _, config = session("rcpt_to=reply:550")
    report = await run(config)
    data = json.loads(json.dumps(report.to_dict()))
    again = Report.from_dict(data)
    assert again.to_dict() == report.to_dict()
    assert again.verdict == "invalid"
    assert again.first_failure is not None and again.first_failure.name == "rcpt_to"
    assert again.stage("rcpt_to").finding == report.stage("rcpt_to").finding
    assert again.stage("tls").transcript == tuple(
        type(line)(round(line.t_ms, 1), line.direction, line.text) for line in report.stage("tls").transcript
    )
    assert data["config"]["password_set"] is True and "password" not in data["config"]


# -- every step bounded: a stall gives "<stage>.timeout" within the timeout ------------------------------

STEPS = [
    # fault rule(s), the stage that must report it
    (("ehlo={action}",), "ehlo"),
    (("ehlo=reply:500", "helo={action}"), "ehlo"),
    (("starttls={action}",), "tls"),
    (("auth={action}",), "auth"),
    (("mail_from={action}",), "mail_from"),
    (("rcpt_to={action}",), "rcpt_to"),
    (("data={action}",), "send"),
    (("end_of_data={action}",), "send"),
]
STEP_IDS = ["+".join(rules).replace("={action}", "") for rules, _ in STEPS]


@pytest.mark.parametrize(("rules", "stage"), STEPS, ids=STEP_IDS)
async def test_a_stall_is_a_timeout_of_that_stage(session: Session, rules: tuple[str, ...], stage: str) -> None:
    _, config = session(*(rule.format(action="stall") for rule in rules))
    report = await run(config)
    result = assert_failed_at(report, stage, f"{stage}.timeout")
    assert SHORT_TIMEOUT_S * 1000 * 0.9 <= result.duration_ms <= (SHORT_TIMEOUT_S + 1) * 1000
    assert "within the timeout" in result.summary
    assert result.finding is not None
    assert "stopped answering during this step" in result.finding.cause
    assert "raise the timeout" in result.finding.fix


@pytest.mark.parametrize(("rules", "stage"), STEPS, ids=STEP_IDS)
async def test_a_disconnect_is_reported_by_that_stage(
    session: Session, rules: tuple[str, ...], stage: str
) -> None:
    _, config = session(*(rule.format(action="disconnect") for rule in rules))
    report = await run(config)
    result = assert_failed_at(report, stage, f"{stage}.disconnected")
    assert "closed the connection" in result.summary
    assert result.finding is not None
    assert result.finding.cause == "The server closed the connection during this step, without an SMTP reply."
    assert result.duration_ms <= 1000


async def test_a_stalled_greeting_is_no_greeting(session: Session) -> None:
    """The greeting wait, the TLS probe and the sniff are each bounded by the timeout."""
    _, config = session("greeting=stall")
    report = await run(config)
    result = assert_failed_at(report, "connect", "connect.no_greeting")
    assert result.duration_ms <= (3 * SHORT_TIMEOUT_S + 1) * 1000


async def test_a_dropped_greeting_is_closed_by_server(session: Session) -> None:
    _, config = session("greeting=disconnect")
    assert_failed_at(await run(config), "connect", "connect.closed_by_server")


async def test_the_run_budget_stops_a_slow_server(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-step timeout (5 s) is longer than the whole budget (made 0.5 s here): the budget wins."""
    monkeypatch.setattr(diag.runner, "budget_for", lambda config: 0.5)
    _, config = session("ehlo=stall", timeout_s=5.0)
    report = await run(config)
    result = assert_failed_at(report, "ehlo", "ehlo.budget_exceeded")
    assert result.duration_ms <= 1500
    assert result.summary == "The run's overall time budget ran out."
    assert result.finding is not None and "time budget" in result.finding.cause
    assert report.duration_ms <= 2500


# -- a crash in a stage, and secrets ---------------------------------------------------------------------


def crash_in_auth(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    async def broken(ctx: RunContext) -> Outcome:
        secret = ctx.config.password  # a local holding the password, as real code would have
        assert secret is not None
        raise RuntimeError(message.format(password=secret.reveal()))

    stages = tuple((n, broken if n == "auth" else c, needs) for n, c, needs in diag.runner.STAGES)
    monkeypatch.setattr(diag.runner, "STAGES", stages)


async def test_a_crashing_stage_becomes_internal_error(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    crash_in_auth(monkeypatch, "bug")
    _, config = session()
    with capture_logs() as logs:
        report = await run(config)
    result = assert_failed_at(report, "auth", "auth.internal_error")
    assert result.summary == "The auth check stopped on an unexpected error (RuntimeError)."
    assert result.finding is not None and "a bug in smtp-diag" in result.finding.cause
    (crash,) = [e for e in logs if e["event"] == "stage_crashed"]
    assert crash["stage"] == "auth" and crash["error_type"] == "RuntimeError"
    assert any("test_engine_runner.py" in frame for frame in crash["at"])
    assert "exc_info" not in crash and "exception" not in crash


def leaked_forms(password: str) -> list[str]:
    """The password as it could appear: plain, base64 alone (LOGIN), and the AUTH PLAIN payload."""
    def b64(raw: str) -> str:
        return base64.b64encode(raw.encode()).decode()

    return [password, b64(password), b64(f"\0{USER}\0{password}"), b64(f"{USER}\0{password}")]


async def test_a_planted_password_never_leaks(
    session: Session,
    fake_smtp_factory: Callable[..., FakeSMTP],
    start_peer: Callable[..., Awaitable[Peer]],
    monkeypatch: pytest.MonkeyPatch,
    json_logs: io.StringIO,
) -> None:
    planted = "pw-7c1e9a-Planted"
    forms = leaked_forms(planted)
    errors: list[ProbeError] = []
    real_map = diag.probe.map_exception

    def recording_map(exc: BaseException, what: str) -> ProbeError:
        error = real_map(exc, what)
        errors.append(error)
        return error

    monkeypatch.setattr(diag.probe, "map_exception", recording_map)
    plaintext = fake_smtp_factory(auth="required", tls="off", username=USER, password=planted)
    login_script = SmtpScript(("AUTH LOGIN",), replies={"AUTH": "235 2.7.0 Authentication successful"})
    login_only = await start_peer(login_script)
    plain_creds: dict[str, Any] = {"username": USER, "password": planted, "tls_mode": "none"}
    runs: list[tuple[str, SmtpConfig]] = [
        ("PLAIN over STARTTLS, accepted", session(password=planted)[1]),
        ("PLAIN over STARTTLS, 535", session(password=planted, server_password="another-password")[1]),
        ("CRAM-MD5 in plaintext, accepted", config_for(plaintext.port, **plain_creds)),
        ("LOGIN, accepted", config_for(login_only.port, **plain_creds)),
        ("disconnect during AUTH", session("auth=disconnect", password=planted)[1]),
        ("stall during AUTH", session("auth=stall", password=planted)[1]),
    ]
    reports = [await run(config) for _, config in runs]  # logged through the real JSON configuration
    with capture_logs() as captured:  # and the same failing run through structlog's capture
        reports.append(await run(runs[1][1]))
    crash_in_auth(monkeypatch, "bug near {password}")
    reports.append(await run(session(password=planted)[1]))
    with capture_logs() as crash_logs:
        reports.append(await run(session(password=planted)[1]))

    # The runs did what they say, so the secret really went through each path.
    assert [r.stage("auth").status for r in reports] == [
        Status.PASSED, Status.FAILED, Status.PASSED, Status.PASSED, Status.FAILED, Status.FAILED,
        Status.FAILED, Status.FAILED, Status.FAILED,
    ]  # fmt: skip
    bad = reports[1].stage("auth").finding
    assert bad is not None and bad.code == "auth.bad_credentials"
    assert [e for e in crash_logs if e["event"] == "stage_crashed"]
    assert reports[2].stage("auth").facts["auth_mechanism_used"] == "CRAM-MD5"
    assert reports[3].stage("auth").facts["auth_mechanism_used"] == "LOGIN"
    assert base64.b64encode(planted.encode()).decode() in login_script.lines  # it did go over the wire
    assert errors, "the failing runs raised ProbeErrors"

    outputs = {
        "report JSON": json.dumps([r.to_dict() for r in reports]),
        "transcripts": "\n".join(line.text for r in reports for s in r.stages for line in s.transcript),
        "summaries": "\n".join(s.summary for r in reports for s in r.stages),
        "JSON log": json_logs.getvalue(),
        "captured logs": repr(captured) + repr(crash_logs),
        "configs": "\n".join(f"{c!r} {c} {c.public_dict()}" for _, c in runs),
        "exceptions": "\n".join(f"{e} {e!r} {e.message} {e.cause!r}" for e in errors),
    }
    assert json_logs.getvalue().count('"stage_finished"') >= 9 * len(runs)  # the logger did log the runs
    assert '"stage_crashed"' in json_logs.getvalue()
    for where, text in outputs.items():
        for form in forms:
            assert form not in text, f"{form!r} leaked into {where}"


async def test_a_full_transcript_says_so_and_the_report_counts_what_was_dropped() -> None:
    """A server whose every reply runs to 150 lines (each reply is cut at 100) fills the transcript (400
    lines): the last recorded line says it is full, and every sink can say how many were not recorded."""

    def long_reply(code: bytes) -> bytes:
        return b"".join(code + b"-line " + str(n).encode() + b"\r\n" for n in range(149)) + code + b" ok\r\n"

    async def chatty(reader: Reader, writer: Writer) -> None:
        await send(writer, long_reply(b"220"))
        while line := await reader.readline():
            if line.upper().startswith(b"QUIT"):
                await send(writer, b"221 bye\r\n")
                return
            await send(writer, long_reply(b"250"))

    async with Peer(chatty) as peer:
        report = await run(parse_config({"host": "127.0.0.1", "port": peer.port, "from_email": "a@example.com",
                                         "recipient": "b@example.com", "tls_mode": "none", "timeout_s": 5}))
    lines = [line for stage in report.stages for line in stage.transcript]
    assert len(lines) == MAX_LINES
    assert lines[-1].direction == "*" and "transcript is full" in lines[-1].text
    assert report.transcript_lines_dropped > 0
    assert Report.from_dict(report.to_dict()).transcript_lines_dropped == report.transcript_lines_dropped
    note = f"{report.transcript_lines_dropped} later lines not recorded"
    assert note in to_markdown(report)
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(render_summary(report))
    assert note in console.export_text()
