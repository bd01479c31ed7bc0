"""`smtp-diag check | explain | serve | demo`.

Exit codes: 0 the configuration is valid, 1 it is not, 2 a usage error (bad flag or value), 130 Ctrl-C.
The password never comes from the command line (shell history, `ps`): --password-stdin or --password-env.
Flags become a dict for `diag.config.parse_config`, the one schema shared with the API; its field errors
are reported under the flag names people typed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Final, NoReturn, TextIO

from diag import __version__
from diag.config import CONFIG_FIELDS, ConfigError, SmtpConfig, TlsMode, parse_config
from diag.fields import MAX_CA_BUNDLE_LENGTH, Field

EXIT_VALID: Final = 0
EXIT_INVALID: Final = 1
EXIT_USAGE: Final = 2
LISTEN_PORT_HELP: Final = "port to listen on, 0 for any free one (default: DIAG_PORT or 8025)"
EXIT_INTERRUPTED: Final = 130
PROG: Final = "smtp-diag"

# The config's flags come from the field table (diag/config.py); argparse stores each under the field's name.
FLAG_FOR_FIELD: Final = {f.name: f.cli.flag for f in CONFIG_FIELDS if f.cli is not None}
ARGUMENT_GROUPS: Final = {
    "server": "server",
    "authentication": "authentication (the password never goes on the command line)",
    "TLS": "TLS",
    "envelope": "envelope",
}


class UsageError(Exception):
    """A bad command line: one message per problem, printed as `smtp-diag: error: ...`, exit 2."""

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + error
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Find out why an SMTP configuration fails, and how to fix it.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{check,explain,serve,demo}")

    check = commands.add_parser(
        "check",
        help="diagnose one SMTP configuration",
        description="Run every stage against one SMTP configuration. Exit 0 valid, 1 invalid, 2 usage error.",
    )
    groups = {key: check.add_argument_group(title) for key, title in ARGUMENT_GROUPS.items()}
    for f in CONFIG_FIELDS:
        if f.cli is not None:
            _add_flag(groups[f.cli.group], f)
    source = groups["authentication"].add_mutually_exclusive_group()
    source.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    source.add_argument(
        "--password-env", metavar="VAR", help="read the password from environment variable VAR"
    )

    output = check.add_argument_group("output")
    fmt = output.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
    fmt.add_argument("--markdown", action="store_true", help="print only a Markdown report (for a ticket)")
    output.add_argument("--log-json", action="store_true", help="emit JSON log lines on stderr")
    check.set_defaults(handler=_check)

    explain = commands.add_parser(
        "explain",
        help="explain an SMTP error line from a product's logs",
        description="Explain SMTP error lines pasted from a product's logs: the stage, the finding, what the "
        "line says and the check that would confirm it. Lines come from the arguments, else from stdin (a "
        "pasted block, one answer per non-blank line). Exit 0 when a line was recognised, 1 when none was, "
        "2 usage error.",
    )
    explain.add_argument("lines", nargs="*", metavar="LINE", help="a log line (default: read stdin)")
    explain.add_argument("--profile", default="palette", help="the client whose words the fixes use: palette "
                         "(default, as for check), palette-vertex or generic")
    explain.add_argument("--json", action="store_true", help="print a JSON array, one object per line")
    explain.set_defaults(handler=_explain)

    serve = commands.add_parser("serve", help="run the web service", description="Run the web service.")
    serve.add_argument("--host", default=None, help="address to listen on (default: DIAG_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help=LISTEN_PORT_HELP)
    serve.add_argument("--demo", action="store_true", help="also start bundled fake SMTP servers to try")
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser("demo", help="alias of 'serve --demo'", description="Alias of 'serve --demo'.")
    demo.add_argument("--host", default=None, help="address to listen on (default: DIAG_HOST or 127.0.0.1)")
    demo.add_argument("--port", type=int, default=None, help=LISTEN_PORT_HELP)
    demo.set_defaults(handler=_serve, demo=True)

    return parser  # subparsers are _Parser too (argparse uses the parent's class): one-line errors


def _add_flag(group: argparse._ArgumentGroup, f: Field) -> None:
    assert f.cli is not None
    options = f.value.argparse_options(f)
    if f.cli.metavar is not None:
        options["metavar"] = f.cli.metavar
    group.add_argument(f.cli.flag, dest=f.name, required=f.required, help=f.cli.help, **options)


# --- check ------------------------------------------------------------------------------------------------


def config_from_args(args: argparse.Namespace, *, stdin: TextIO, environ: dict[str, str]) -> SmtpConfig:
    """The flags as a config, or one UsageError naming every flag that is wrong (not just the first)."""
    problems: list[str] = []
    password_flag = "--password-stdin" if args.password_stdin else "--password-env"
    has_source = args.password_stdin or args.password_env is not None
    if args.username is not None and not has_source:
        problems.append("--username needs a password source: --password-stdin or --password-env VAR")
    if has_source and args.username is None:
        problems.append(f"{password_flag} needs --username")
    said: set[str] = set()  # fields whose problem is already said in flag words
    for f in CONFIG_FIELDS:
        if f.needs is not None and getattr(args, f.name) and not getattr(args, f.needs.other):
            problems.append(f"{FLAG_FOR_FIELD[f.name]} needs {FLAG_FOR_FIELD[f.needs.other]}")
            said.add(f.needs.other)

    data: dict[str, Any] = {}
    for f in CONFIG_FIELDS:
        value = getattr(args, f.name, None)
        if f.cli is None or value is None:
            continue  # not given: parse_config applies the default
        try:
            data[f.name] = _read_file(f.cli.flag, value) if f.cli.from_file else value
        except UsageError as exc:  # every problem at once: the rest are still checked
            problems.extend(exc.messages)
    try:
        if has_source:
            data["password"] = _read_password(args, stdin, environ)
    except UsageError as exc:
        problems.extend(exc.messages)
    from diag.input_problems import input_problems  # here: it loads the TLS helpers, --help stays fast

    flags = {**FLAG_FOR_FIELD, "password": password_flag}
    if problems:  # the password flags' problems are said above, in flag words
        said |= {"username", "password"}
    try:
        config: SmtpConfig | None = parse_config(data)
        errors: list[tuple[str, str]] = []
    except ConfigError as exc:
        config = None
        errors = [(e.field, e.message) for e in exc.errors]
    named = {field for field, _ in errors}
    errors += [(p.field, p.message) for p in input_problems(data, skip=named)]
    problems += [f"{flags.get(field, field)}: {message}" for field, message in errors if field not in said]
    if problems or config is None:
        raise UsageError(*problems)
    return config


def _read_password(args: argparse.Namespace, stdin: TextIO, environ: dict[str, str]) -> str:
    if args.password_stdin:
        line = stdin.readline(MAX_CA_BUNDLE_LENGTH)
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise UsageError("--password-stdin: no password on stdin (expected one line)")
        return password
    value = environ.get(args.password_env)
    if value is None:
        raise UsageError(f"--password-env: environment variable {args.password_env} is not set")
    if not value:
        raise UsageError(f"--password-env: environment variable {args.password_env} is empty")
    return value


def _read_file(flag: str, path: str) -> str:
    """A flag's value read from the file it names (--ca-file): bounded, text, or a usage error naming the flag."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_CA_BUNDLE_LENGTH + 1)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag}: {path} is not a PEM text file") from None
    if len(text) > MAX_CA_BUNDLE_LENGTH:
        raise UsageError(f"{flag}: {path} is larger than {MAX_CA_BUNDLE_LENGTH // 1024} KiB")
    return text


def _check(args: argparse.Namespace, *, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    config = config_from_args(args, stdin=stdin, environ=dict(os.environ))
    if config.effective_tls_mode is not TlsMode.NONE:
        from diag import certs

        # As early as the CA bundle is known: OpenSSL loads the system store in that thread without the
        # GIL, on another core, while this one imports asyncio and the engine (start-up time, issue 13).
        certs.prepare(config.ca_bundle)
    import asyncio

    from diag.logging import configure_logging, configure_logging_on_first_record

    if args.log_json:
        configure_logging(json=True, level="info", stream=stderr)
    else:  # warnings only: most runs log nothing, and then never import structlog (start-up time)
        configure_logging_on_first_record(json=False, level="warning", stream=stderr)
    report = asyncio.run(_run_and_show(config, args, stdout))
    return EXIT_VALID if report.valid else EXIT_INVALID


class _Waiting:
    """What the spinner says: the stage being waited on and the seconds against its step timeout. Rendered
    afresh on every refresh of the live display, so the seconds count up while the network is silent."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.stage = "config"
        self.started = time.monotonic()

    def start(self, stage: str) -> None:
        self.stage = stage
        self.started = time.monotonic()

    def __rich__(self) -> Any:
        from rich.text import Text

        elapsed = time.monotonic() - self.started
        return Text(f"{self.stage}: waiting {elapsed:.1f} s of the {self.timeout_s:g} s step timeout", style="dim")


async def _run_and_show(config: SmtpConfig, args: argparse.Namespace, stdout: TextIO) -> Any:
    # Imported here so usage errors and --help stay fast and do not need the engine's dependencies; rich
    # only for the live view (--json and --markdown write none of it, and start faster without it).
    from diag import render
    from diag.origin import with_origin
    from diag.report import RunFinished, StageFinished, StageStarted
    from diag.runner import run_events

    live = not (args.json or args.markdown)
    console: Any = None
    spinner: Any = contextlib.nullcontext()
    waiting = _Waiting(config.timeout_s)
    if live:
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        console = Console(file=stdout, no_color="NO_COLOR" in os.environ, highlight=False)
        # A spinner with the elapsed seconds on a terminal only: a 20 s silent connect is never a frozen
        # screen, and a pipe or a file gets no control sequences.
        if console.is_terminal:
            spinner = Live(Spinner("dots", text=waiting), console=console, transient=True, refresh_per_second=10)
    with spinner:
        # aclosing: the run's cleanup (its SMTP session) happens here, also when Ctrl-C cancels us mid-run,
        # not later in asyncio's shutdown of leftover generators.
        async with contextlib.aclosing(run_events(config)) as events:
            async for event in events:
                if isinstance(event, StageStarted):
                    waiting.start(event.name)
                elif live and isinstance(event, StageFinished):
                    # In a pipe, a long summary stays on one line (grep-able); a terminal wraps it.
                    console.print(render.render_stage(event.result), soft_wrap=not console.is_terminal)
                    stdout.flush()  # stages appear as they finish, even through a pipe
                elif isinstance(event, RunFinished):
                    if hasattr(spinner, "stop"):  # the Live display, on a terminal
                        spinner.stop()
                    report = with_origin(event.report)  # a report pasted in a ticket says where it ran
                    if args.json:
                        stdout.write(render.to_json(report) + "\n")
                    elif args.markdown:
                        stdout.write(render.to_markdown(report))
                    else:
                        console.print()
                        console.print(render.render_summary(report))
                    stdout.flush()
                    return report
    raise AssertionError("run_events ended without RunFinished")  # pragma: no cover


# --- explain ----------------------------------------------------------------------------------------------


def _explain(args: argparse.Namespace, *, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    from diag.explain import MAX_TEXT_CHARS, ExplainInputError, explain_text

    text = "\n".join(args.lines) if args.lines else stdin.read(MAX_TEXT_CHARS + 1)
    try:
        answers = explain_text(text, args.profile)
    except ExplainInputError as exc:
        name = "--profile" if exc.field == "profile" else ("LINE" if args.lines else "stdin")
        raise UsageError(f"{name}: {exc.message}") from None
    if args.json:
        import json

        stdout.write(json.dumps([a.to_dict() for a in answers], indent=2, ensure_ascii=False) + "\n")
    else:
        stdout.write("\n".join(_explanation_text(a) for a in answers))
    stdout.flush()
    return EXIT_VALID if any(a.known for a in answers) else EXIT_INVALID


def _explanation_text(answer: Any) -> str:
    """One answer as plain lines: grep-able, no colour (the line is already free of control characters)."""
    out = [f"line: {answer.line}"]
    if answer.known:
        out.append(f"  stage: {answer.stage}   finding: {answer.code}")
    out.append(f"  cause: {answer.cause}")
    if answer.fix:
        out.append(f"  fix: {answer.fix}")
    if answer.facts:
        out.append("  read from the line: " + ", ".join(f"{k}={v}" for k, v in answer.facts.items()))
    out += [f"  - {inference}" for inference in answer.inferences]
    if answer.confirm:
        out.append(f"  confirm with: {answer.confirm['command']}")
    if answer.source:
        out.append(f"  (message known from: {answer.source})")
    return "\n".join(out) + "\n"


# --- serve / demo -----------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, *, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:  # 0: any free port (printed), as DIAG_PORT=0
        raise UsageError("--port: must be a whole number from 0 to 65535 (0: any free port)")
    try:  # the service is built separately and imported only when asked for
        serve_module = importlib.import_module("diag.service.serve")
    except ImportError as exc:
        stderr.write(f"{PROG}: error: the web service is not available in this installation ({exc})\n")
        return EXIT_USAGE
    result = serve_module.main(args.host, args.port, bool(args.demo))
    return result if isinstance(result, int) else 0


# --- entry point ------------------------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        with contextlib.redirect_stdout(stdout):  # --help goes to the stdout we were given
            args = build_parser().parse_args(argv)
        code: int = args.handler(args, stdin=stdin, stdout=stdout, stderr=stderr)
        return code
    except UsageError as exc:
        for message in exc.messages:
            stderr.write(f"{PROG}: error: {message}\n")
        return EXIT_USAGE
    except BrokenPipeError:  # `smtp-diag check ... | head`: the reader left; say nothing more
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stdout.fileno())
        return EXIT_INVALID
    except KeyboardInterrupt:
        stderr.write(f"\n{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
