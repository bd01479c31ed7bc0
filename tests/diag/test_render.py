"""The three views of a Report: JSON, Markdown (parsed with a real CommonMark+tables parser), rich text."""

from __future__ import annotations

import io
import json
import re

from markdown_it import MarkdownIt
from rich.console import Console

from diag.config import SmtpConfig
from diag.render import render_report, render_stage, render_summary, to_json, to_markdown
from diag.report import Finding, Report, StageResult, Status, TranscriptLine


def sample_report() -> Report:
    config = SmtpConfig(host="smtp.example.com", port=587, from_email="app@example.com", username="app")
    return Report(
        id="run-1",
        started_at="2025-01-01T00:00:00.000Z",
        duration_ms=321.0,
        config=config.public_dict(),
        stages=(
            StageResult("config", Status.PASSED, 0.4, "Configuration is well-formed."),
            StageResult(
                "dns",
                Status.PASSED,
                12.0,
                "smtp.example.com has 1 address.",
                facts={"addresses": ["192.0.2.10"], "denied_addresses": []},
            ),
            StageResult(
                "tls",
                Status.WARNING,
                40.0,
                "Certificate expires soon | renew it",
                facts={
                    "tls_version": "TLSv1.3",
                    "certificate_subject": "CN=smtp.example.com",
                    "certificate_days_left": 9,
                    "certificate_serial": "0A",
                },
                finding=Finding("tls.expires_soon", "The certificate expires in 9 days.", "Renew it."),
            ),
            StageResult(
                "auth",
                Status.FAILED,
                55.0,
                "The server rejected the user name or password (535).",
                facts={"auth_mechanism_used": "PLAIN", "reply_code": 535},
                finding=Finding(
                    "auth.bad_credentials",
                    "The server does not accept this user name and password.",
                    "Check the password; Gmail needs an app password.",
                ),
                transcript=(
                    TranscriptLine(120.4, "C", "AUTH PLAIN ********"),
                    TranscriptLine(131.9, "S", "535 5.7.8 Authentication credentials invalid"),
                    TranscriptLine(132.0, "*", "server said ``` in a line"),
                ),
            ),
            StageResult("mail_from", Status.SKIPPED, 0.0, "Not run: the auth stage failed."),
        ),
    )


def plain(renderable: object, width: int = 120) -> str:
    console = Console(file=io.StringIO(), force_terminal=False, width=width)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


# --- JSON ---------------------------------------------------------------------------------------------------


def test_json_is_the_report_schema_and_reads_back() -> None:
    report = sample_report()
    data = json.loads(to_json(report))
    assert data == report.to_dict()
    assert data["verdict"] == "invalid"
    assert Report.from_dict(data) == report
    assert "password" not in data["config"]
    assert data["config"]["password_set"] is False


# --- Markdown -----------------------------------------------------------------------------------------------


def markdown_html(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


def test_markdown_title_names_verdict_and_target() -> None:
    title = to_markdown(sample_report()).splitlines()[2]
    assert title.startswith("## ")
    assert "INVALID" in title
    assert "`smtp.example.com:587`" in title


def test_markdown_reads_top_down_summary_line_cause_and_fix_warnings_stages_config() -> None:
    """What a support engineer pastes into a ticket: the answer in the first line, then the details."""
    md = to_markdown(sample_report())
    assert md.splitlines()[0] == (
        "**❌ Failed at auth:** `The server rejected the user name or password (535).`. "
        "**Fix:** Check the password; Gmail needs an app password."
    )
    order = ["### ❌ auth: failed", "**Cause:**", "### ⚠️ tls: warning", "### Stages", "### Configuration"]
    positions = [md.index(marker) for marker in order]
    assert positions == sorted(positions)


def test_markdown_summary_line_for_a_valid_run_with_and_without_warnings() -> None:
    report = sample_report()
    warned = Report(report.id, report.started_at, 1.0, report.config, report.stages[:3])
    assert to_markdown(warned).startswith("**⚠️ Valid, with 1 warning** (tls): `Certificate expires soon | renew it`")
    clean = Report(report.id, report.started_at, 1.0, report.config, report.stages[:2])
    assert to_markdown(clean).startswith("**✅ Valid:** every stage that ran passed.\n")


def test_markdown_says_where_the_check_ran() -> None:
    report = sample_report()
    origin = {"tool": "smtp-diag 0.1.0", "hostname": "worker-7", "source_address": "10.0.0.5", "pod": "diag-1"}
    md = to_markdown(Report(report.id, report.started_at, 1.0, report.config, report.stages, origin=origin))
    assert "`smtp-diag 0.1.0`, on `worker-7` from `10.0.0.5` (pod `diag-1`)." in md


def test_markdown_config_shows_password_set_never_password() -> None:
    report = sample_report()
    config = dict(report.config, password="pw-should-not-show", password_set=True)
    md = to_markdown(Report(report.id, report.started_at, report.duration_ms, config, report.stages))
    assert "pw-should-not-show" not in md
    assert "| password_set | `yes` |" in md


def test_markdown_stage_table_renders_one_row_per_stage_with_pipes_escaped() -> None:
    report = sample_report()
    html = markdown_html(to_markdown(report))
    tables = re.findall(r"<table>.*?</table>", html, re.S)
    assert len(tables) == 2  # stages, configuration
    stage_rows = re.findall(r"<tr>(.*?)</tr>", tables[0], re.S)[1:]  # minus the header
    assert len(stage_rows) == len(report.stages)
    for row, stage in zip(stage_rows, report.stages, strict=True):
        cells = re.findall(r"<td>(.*?)</td>", row, re.S)
        assert len(cells) == 5
        assert cells[1] == stage.name
        assert cells[2] == stage.status.value
    tls_cells = re.findall(r"<td>(.*?)</td>", stage_rows[2], re.S)
    # A summary may quote the server: a code span, and the pipe stayed inside its cell.
    assert tls_cells[4] == "<code>Certificate expires soon | renew it</code>"


def test_markdown_details_failed_and_warning_stages_only() -> None:
    md = to_markdown(sample_report())
    assert "### ❌ auth: failed" in md
    assert "### ⚠️ tls: warning" in md
    assert "### ✅" not in md
    assert "dns: passed" not in md
    auth = md.split("### ❌ auth: failed", 1)[1]
    assert "**Finding:** `auth.bad_credentials`" in auth
    assert "**Cause:** `The server does not accept this user name and password.`" in auth
    assert "**Fix:** Check the password; Gmail needs an app password." in auth
    assert "- `auth_mechanism_used`: `PLAIN`" in auth
    assert "- `reply_code`: `535`" in auth


def test_markdown_transcript_is_a_fenced_block_with_offsets_that_server_text_cannot_close() -> None:
    md = to_markdown(sample_report())
    html = markdown_html(md)
    blocks = re.findall(r"<pre><code[^>]*>(.*?)</code></pre>", html, re.S)
    assert len(blocks) == 1
    lines = blocks[0].splitlines()
    assert re.fullmatch(r"\s*\+120ms C: AUTH PLAIN \*{8}", lines[0])
    assert re.fullmatch(r"\s*\+132ms S: 535 5\.7\.8 Authentication credentials invalid", lines[1])
    assert lines[2].strip() == "+132ms *  server said ``` in a line"


def test_markdown_keeps_angle_addresses_visible() -> None:
    report = sample_report()
    stage = StageResult(
        "mail_from",
        Status.FAILED,
        3.0,
        "MAIL FROM:<app@example.com> was refused.",
        finding=Finding("mail_from.sender_refused", "Sender <app@example.com> not allowed.", "Use <x@y>."),
    )
    md = to_markdown(Report(report.id, report.started_at, 1.0, report.config, (stage,)))
    html = markdown_html(md)
    assert "MAIL FROM:&lt;app@example.com&gt; was refused." in html
    assert "<app@example.com>" not in html


# --- rich text ----------------------------------------------------------------------------------------------


def test_render_stage_is_one_line_with_symbol_name_duration_summary() -> None:
    symbols = {Status.PASSED: "✔", Status.WARNING: "⚠", Status.FAILED: "✖", Status.SKIPPED: "\u2013"}
    for stage in sample_report().stages:
        text = plain(render_stage(stage)).rstrip("\n")
        assert "\n" not in text
        assert text.startswith(symbols[stage.status] + " " + stage.name)
        assert f"{stage.duration_ms:.0f} ms" in text
        assert text.endswith(stage.summary)


def test_render_stage_does_not_interpret_server_text_as_markup() -> None:
    stage = StageResult("ehlo", Status.FAILED, 1.0, "server said [bold]hi[/bold] [red]")
    assert "server said [bold]hi[/bold] [red]" in plain(render_stage(stage))


def test_status_symbols_are_coloured_on_a_terminal_and_plain_otherwise() -> None:
    failed = StageResult("auth", Status.FAILED, 1.0, "no")
    colour = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=100)
    colour.print(render_stage(failed))
    assert "\x1b[1;31m✖" in colour.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" not in plain(render_stage(failed))
    no_colour = Console(file=io.StringIO(), force_terminal=True, no_color=True, width=100)
    no_colour.print(render_stage(failed))
    assert "\x1b[31m" not in no_colour.file.getvalue()  # type: ignore[attr-defined]


def test_summary_puts_first_failure_cause_and_fix_first_then_warnings_then_key_facts() -> None:
    text = plain(render_summary(sample_report()))
    assert "Verdict: INVALID" in text
    assert "smtp.example.com:587" in text
    order = [
        "Failed at auth",
        "auth.bad_credentials",
        "The server does not accept this user name and password.",
        "Check the password; Gmail needs an app password.",
        "Warnings (1)",
        "tls.expires_soon",
        "The certificate expires in 9 days.",
        "Renew it.",
        "Key facts",
        "dns.addresses",
        "192.0.2.10",
        "TLSv1.3",
        "CN=smtp.example.com",
        "tls.certificate_days_left",
        "auth.auth_mechanism_used",
    ]
    positions = [text.index(s) for s in order]
    assert positions == sorted(positions)
    assert "denied_addresses" not in text  # empty facts are noise
    assert "certificate_serial" not in text  # not a key fact: it stays in the JSON report


def test_summary_of_a_valid_report_says_so() -> None:
    report = sample_report()
    passed = tuple(s for s in report.stages if s.status is Status.PASSED)
    text = plain(render_summary(Report("r", report.started_at, 5.0, report.config, passed)))
    assert "Verdict: VALID" in text
    assert "Every stage that ran passed." in text
    assert "Failed at" not in text
    assert "Warnings" not in text


def test_render_report_lists_every_stage_then_the_summary() -> None:
    report = sample_report()
    text = plain(render_report(report))
    positions = [text.index(f" {s.name} ") for s in report.stages]
    assert positions == sorted(positions)
    assert text.index("Verdict: INVALID") > positions[-1]


def test_additional_findings_are_shown_in_markdown_and_terminal() -> None:
    """A stage with two warnings (skip-verify and anonymous SMTP): every sink shows both."""
    base = sample_report()
    config_stage = StageResult(
        "config",
        Status.WARNING,
        0.2,
        "Configuration works but: certificate verification is off; anonymous SMTP.",
        finding=Finding("config.insecure_skip_verify", "Verification is off.", "Turn it off."),
        additional_findings=(Finding("config.anonymous", "Anonymous SMTP is a risk.", "Use credentials."),),
    )
    report = Report(base.id, base.started_at, base.duration_ms, base.config, (config_stage, *base.stages[1:]))
    markdown = to_markdown(report)
    expected = ("`config.insecure_skip_verify`", "`config.anonymous`", "Anonymous SMTP is a risk.", "Use credentials.")
    for text in expected:
        assert text in markdown, text
    terminal = plain(render_summary(report))
    assert "config.anonymous" in terminal and "Anonymous SMTP is a risk." in terminal
    assert Report.from_dict(json.loads(to_json(report))).stages[0].additional_findings == (
        config_stage.additional_findings
    )


def test_configuration_values_cannot_write_markdown_into_the_ticket() -> None:
    """A From or host someone typed is well-formed JSON whatever it holds: shown literally, never as markup."""
    config = SmtpConfig("smtp.example.com", 587, "![t](https://evil.example/x.png)", username="# Heading | x")
    report = Report(id="r", started_at="2025-01-01T00:00:00.000Z", duration_ms=1.0, config=config.public_dict(),
                    stages=())
    text = to_markdown(report)
    assert "| from_email | `![t](https://evil.example/x.png)` |" in text
    assert "| username | `# Heading \\| x` |" in text
