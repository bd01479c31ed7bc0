"""Three views of one Report: JSON (the schema), Markdown (for a support ticket) and rich text (the terminal).

Renderers only read the Report and StageResults; they never re-interpret a stage. Server text and facts are
untrusted: diag.server_text has already removed control characters and line breaks from them where they
entered, and here the rich views build `Text` objects (no console markup is parsed from them) and the
Markdown view puts everything that may quote a server (summaries, causes, facts, the transcript) in code
spans and a fenced block it cannot close, so no heading, link or image can come out of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from diag.product_log import LEAD as PRODUCT_LOG_LEAD
from diag.report import Finding, Report, StageResult, Status, TranscriptLine

# rich is imported by the views that draw with it, not here: `smtp-diag check --json` or `--markdown`
# writes no rich at all, and importing it costs ~15 ms of start-up (issue 13).
if TYPE_CHECKING:
    from rich.console import Group, RenderableType
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

MAX_FACT_CHARS: Final = 200
MAX_FACTS_PER_STAGE: Final = 20

SYMBOLS: Final = {Status.PASSED: "✔", Status.WARNING: "⚠", Status.FAILED: "✖", Status.SKIPPED: "\u2013"}
STYLES: Final = {
    Status.PASSED: "green",
    Status.WARNING: "yellow",
    Status.FAILED: "bold red",
    Status.SKIPPED: "dim",
}
MARKDOWN_ICONS: Final = {Status.PASSED: "✅", Status.WARNING: "⚠️", Status.FAILED: "❌", Status.SKIPPED: "⏭️"}

# Facts people look for first, by the names the stages give them; the JSON report has all of them.
KEY_FACTS: Final = frozenset(
    {
        "addresses", "denied_addresses", "mx_records", "connected_address", "greeting", "banner",
        "implicit_tls_detected", "auth_mechanisms", "tls_version", "cipher", "certificate_subject",
        "certificate_issuer", "certificate_sans", "certificate_days_left", "certificate_not_after",
        "verified", "verify_message", "after_tls_auth_mechanisms", "auth_mechanism_used",
    }
)  # fmt: skip


# --- shared formatting -------------------------------------------------------------------------------------


def format_duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.2f} s"


def format_fact(value: Any) -> str:
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif value is None:
        text = "—"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, Mapping):
        text = ", ".join(f"{k}={format_fact(v)}" for k, v in value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        text = ", ".join(format_fact(v) for v in value) or "(none)"
    else:
        text = str(value)
    if len(text) > MAX_FACT_CHARS:
        text = text[:MAX_FACT_CHARS] + "…"
    return text


def format_transcript_line(line: TranscriptLine) -> str:
    marker = f"{line.direction}:" if line.direction in ("C", "S") else "* "
    return f"{'+' + format(line.t_ms, '.0f') + 'ms':>9} {marker} {line.text}"


def key_facts(report: Report) -> list[tuple[str, str, str]]:
    """(stage, fact name, formatted value) for the facts a reader looks for first, in stage order."""
    out: list[tuple[str, str, str]] = []
    for stage in report.stages:
        if stage.status is Status.SKIPPED:
            continue
        for name, value in stage.facts.items():
            empty = value is None or (isinstance(value, str | list | tuple | dict) and not value)
            if name in KEY_FACTS and not empty:
                out.append((stage.name, name, format_fact(value)))
    return out


def _limited_facts(stage: StageResult) -> Iterable[tuple[str, str]]:
    for i, (name, value) in enumerate(stage.facts.items()):
        if i == MAX_FACTS_PER_STAGE:
            yield "…", f"{len(stage.facts) - MAX_FACTS_PER_STAGE} more in the JSON report"
            return
        yield name, format_fact(value)


# --- JSON ---------------------------------------------------------------------------------------------------


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


# --- Markdown -----------------------------------------------------------------------------------------------


def dropped_note(report: Report) -> str:
    """What a reader must know when the transcript is not whole ("" when it is)."""
    n = report.transcript_lines_dropped
    return f" The transcript was full: {n} later line{'s' if n != 1 else ''} not recorded." if n else ""


def md_cell(text: str) -> str:
    """Make text safe inside a table cell: one line, pipes escaped, no raw HTML."""
    return md_inline(" ".join(text.split())).replace("|", "\\|")


def md_code_cell(text: str) -> str:
    """Untrusted text as a code span inside a table cell (GFM unescapes the pipes inside it)."""
    return md_code_span(text).replace("|", "\\|")


def md_inline(text: str) -> str:
    """Keep `<user@example.com>` visible: GitHub and friends would swallow it as an HTML tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def md_code_span(text: str) -> str:
    """Text shown literally on one line: the backtick fence is longer than any backtick run in the text,
    so the text cannot close it, and a line break cannot end the span's paragraph."""
    text = " ".join(text.splitlines())
    if not text:
        return "—"
    ticks = "`"
    while ticks in text:
        ticks += "`"
    pad = " " if text.startswith("`") or text.endswith("`") or (text[0] == text[-1] == " ") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def md_code_block(lines: list[str]) -> str:
    body = "\n".join(" ".join(line.splitlines()) for line in lines)  # one report line, one block line
    fence = "```"
    while fence in body:  # a server that sends backticks must not close our block
        fence += "`"
    return f"{fence}text\n{body}\n{fence}"


def markdown_summary_line(report: Report) -> str:
    """The one line a support engineer reads first: what failed and the fix, or that it is valid."""
    failure = report.first_failure
    if failure is not None:
        fix = f" **Fix:** {md_inline(failure.finding.fix)}" if failure.finding else ""
        return f"**❌ Failed at {md_inline(failure.name)}:** {md_code_span(failure.summary)}.{fix}"
    warnings = report.warnings
    if warnings:
        n = len(warnings)
        names = ", ".join(md_inline(w.name) for w in warnings)
        return f"**⚠️ Valid, with {n} warning{'s' if n > 1 else ''}** ({names}): {md_code_span(warnings[0].summary)}"
    return "**✅ Valid:** every stage that ran passed."


def _origin_words(origin: Mapping[str, Any]) -> str:
    parts = [md_code_span(str(origin["tool"]))] if origin.get("tool") else []
    if origin.get("hostname"):
        where = f"on {md_code_span(str(origin['hostname']))}"
        if origin.get("source_address"):
            where += f" from {md_code_span(str(origin['source_address']))}"
        if origin.get("pod"):
            where += f" (pod {md_code_span(str(origin['pod']))})"
        parts.append(where)
    return (", " + ", ".join(parts)) if parts else ""


def to_markdown(report: Report) -> str:
    """Read top-down: the summary line, the failure's cause and fix, the warnings, the stages, the config."""
    host = report.config.get("host", "?")
    port = report.config.get("port", "?")
    icon = "✅" if report.valid else "❌"
    out: list[str] = [
        markdown_summary_line(report),
        "",
        f"## {icon} SMTP check: **{report.verdict.upper()}** for {md_code_span(f'{host}:{port}')}",
        "",
        f"Run {md_code_span(report.id)} started {report.started_at}, "
        f"took {format_duration(report.duration_ms)}{_origin_words(report.origin)}.{dropped_note(report)}",
    ]
    failure = report.first_failure
    if failure is not None:
        out += ["", *_markdown_problem(failure)]
    for s in report.warnings:
        out += ["", *_markdown_problem(s)]
    out += ["", "### Stages", "", "| | Stage | Status | Time | Summary |", "|---|---|---|---|---|"]
    for s in report.stages:
        out.append(
            f"| {MARKDOWN_ICONS[s.status]} | {md_cell(s.name)} | {s.status.value} | "
            f"{format_duration(s.duration_ms)} | {md_code_cell(s.summary)} |"
        )
    out += ["", "### Configuration", "", "| Setting | Value |", "|---|---|"]
    for name, value in report.config.items():
        if name == "password":  # public_dict never has it; a hand-made dict must not leak it either
            continue
        # Values are what someone typed (a From of "![x](https://...)" is well-formed JSON): code spans too.
        out.append(f"| {md_cell(name)} | {md_code_cell(format_fact(value))} |")
    return "\n".join(out) + "\n"


def _markdown_problem(s: StageResult) -> list[str]:
    # Summaries and causes quote the server: code spans. The fix is our own words (and the config's).
    out = [f"### {MARKDOWN_ICONS[s.status]} {s.name}: {s.status.value}", "", md_code_span(s.summary), ""]
    for finding in s.findings:
        out += [
            f"**Finding:** {md_code_span(finding.code)}",
            "",
            f"**Cause:** {md_code_span(finding.cause)}",
            "",
            f"**Fix:** {md_inline(finding.fix)}",
            "",
        ]
    if s.product_log:
        out += [f"**{PRODUCT_LOG_LEAD}:** {md_code_span(s.product_log)}", ""]
    if s.facts:
        out.append("**Facts:**")
        out.append("")
        out += [f"- {md_code_span(name)}: {md_code_span(value)}" for name, value in _limited_facts(s)]
        out.append("")
    if s.transcript:
        out += ["**Transcript:**", "", md_code_block([format_transcript_line(t) for t in s.transcript])]
    return out


# --- rich text ----------------------------------------------------------------------------------------------


def render_stage(result: StageResult) -> Text:
    """One line: status symbol, stage name, duration, summary."""
    from rich.text import Text

    line = Text(no_wrap=False)
    line.append(f"{SYMBOLS[result.status]} ", style=STYLES[result.status])
    line.append(f"{result.name:<10}", style="bold")
    line.append(f"{format_duration(result.duration_ms):>9}  ", style="dim")
    line.append(result.summary)
    return line


def render_summary(report: Report) -> Panel:
    """The verdict panel: the first failure's cause and fix up front, then warnings, then key facts."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = []
    failure = report.first_failure
    if failure is not None:
        parts.append(Text.assemble(("Failed at ", "bold"), (failure.name, "bold red"), ": ", failure.summary))
        parts += [_cause_and_fix(finding, emphasis="bold red") for finding in failure.findings]
        if failure.product_log:
            parts.append(Text.assemble((f"  {PRODUCT_LOG_LEAD}: ", "dim"), failure.product_log))
    else:
        parts.append(Text("Every stage that ran passed.", style="green"))
    warnings = report.warnings
    if warnings:
        parts.append(Text(""))
        parts.append(Text(f"Warnings ({len(warnings)}):", style="bold yellow"))
        for w in warnings:
            parts.append(Text.assemble(("⚠ ", "yellow"), (w.name, "bold"), ": ", w.summary))
            parts += [_cause_and_fix(finding, emphasis="yellow") for finding in w.findings]
    facts = key_facts(report)
    if facts:
        parts.append(Text(""))
        parts.append(Text("Key facts:", style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        for stage, name, value in facts:
            grid.add_row(Text(f"{stage}.{name}"), Text(value))
        parts.append(grid)
    if report.transcript_lines_dropped:
        parts += [Text(""), Text(dropped_note(report).strip(), style="dim")]
    verdict_style = "green" if report.valid else "red"
    title = Text.assemble(
        ("Verdict: ", "bold"),
        (report.verdict.upper(), f"bold {verdict_style}"),
        f"  {report.config.get('host', '?')}:{report.config.get('port', '?')}",
        ("  " + format_duration(report.duration_ms), "dim"),
    )
    return Panel(Group(*parts), title=title, title_align="left", border_style=verdict_style, box=box.ROUNDED)


def _cause_and_fix(finding: Finding, *, emphasis: str) -> Table:
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    grid.add_row(Text("  Finding", style="dim"), Text(finding.code, style="dim"))
    grid.add_row(Text("  Cause", style=emphasis), Text(finding.cause))
    grid.add_row(Text("  Fix", style="bold green"), Text(finding.fix))
    return grid


def render_report(report: Report) -> Group:
    from rich.console import Group
    from rich.text import Text

    return Group(*(render_stage(s) for s in report.stages), Text(""), render_summary(report))
