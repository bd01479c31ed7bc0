"""`smtp-diag`: exit codes, output modes, live output, Ctrl-C and secrets, as a real process against a real peer.

Usage errors are checked in-process through `main(argv, ...)` (they never touch the network); everything that
runs a diagnosis runs `python -m diag` (what the `smtp-diag` command runs) as a subprocess against FakeSMTP or a
real loopback socket.
"""

from __future__ import annotations

import base64
import gc
import importlib.metadata
import io
import json
import os
import signal
import socket
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

import diag
from diag.cli import main
from diag.report import STAGE_NAMES, Report
from diag.service.openapi import openapi_document
from fake_smtp import FakeSMTP
from tests.peer import Peer, never_greets

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "pw-9f3c1e-Planted"
USER = "u"
# Every spelling a leaked password could take: itself, base64 of it, and the AUTH PLAIN / LOGIN payloads.
LEAK_FORMS = (
    PASSWORD,
    base64.b64encode(PASSWORD.encode()).decode(),
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode(),
    base64.b64encode(f"{USER}\0{USER}\0{PASSWORD}".encode()).decode(),
)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTP_DIAG_TEST_")}
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONUNBUFFERED="1", **extra)
    return env


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diag", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env or cli_env(),
        timeout=50,
        check=False,
    )


def check_args(host: str, port: int, *extra: str) -> list[str]:
    return ["check", "--profile", "generic", "--host", host, "--port", str(port), "--from-email", "app@example.com",
            "--timeout", "5", *extra]  # fmt: skip


def assert_no_leak(*outputs: str) -> None:
    for out in outputs:
        for form in LEAK_FORMS:
            assert form not in out


# --- usage errors (exit 2), in-process ----------------------------------------------------------------------


def run_main(argv: list[str], stdin: str = "", environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


BASE = ["check", "--profile", "generic", "--host", "smtp.example.com", "--port", "587", "--from-email",
        "a@example.com"]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["check", "--host", "h", "--port", "0", "--from-email", "a@b.c"], "--port"),
        (["check", "--host", "h", "--port", "abc", "--from-email", "a@b.c"], "--port"),
        (["check", "--host", "h", "--port", "70000", "--from-email", "a@b.c"], "--port"),
        (["check", "--host", "h", "--port", "25", "--from-email", "a@b.c\r\nRCPT TO:<x@y>"], "--from-email"),
        (["check", "--host", "h\nx", "--port", "25", "--from-email", "a@b.c"], "--host"),
        (["check", "--host", "h", "--port", "25", "--from-email", "a@b.c", "--helo-name", "a\rb"], "--helo-name"),
        (["check", "--port", "25", "--from-email", "a@b.c"], "--host"),
        (["check", "--host", "h", "--port", "25"], "--from-email"),
        ([*BASE, "--username", "u"], "--username"),
        ([*BASE, "--password-stdin"], "--password-stdin"),
        ([*BASE, "--password-env", "X"], "--password-env"),
        ([*BASE, "--send"], "--send"),
        ([*BASE, "--tls-mode", "ssl"], "--tls-mode"),
        # The default profile is palette: its form has no TLS mode or CA file.
        (["check", "--host", "h.example", "--port", "25", "--from-email", "a@b.c", "--tls-mode", "none"], "--tls-mode"),
        (["check", "--profile", "palette-vertex", "--host", "h.example", "--port", "25", "--from-email", "a@b.c",
          "--insecure-skip-tls-verify"], "--insecure-skip-tls-verify"),
        ([*BASE, "--profile", "outlook"], "--profile"),
        ([*BASE, "--timeout", "abc"], "--timeout"),
        ([*BASE, "--timeout", "0"], "--timeout"),
        ([*BASE, "--dns-server", "not-an-ip"], "--dns-server"),
        ([*BASE, "--recipient", "x@y\r\n"], "--recipient"),
        ([*BASE, "--json", "--markdown"], "--markdown"),
        ([*BASE, "--bogus"], "--bogus"),
        (["frobnicate"], "frobnicate"),
        ([], "{check,explain,serve,demo}"),
        (["serve", "--port", "-1"], "--port"),
        (["serve", "--port", "65536"], "--port"),
    ],
)
def test_usage_errors_exit_2_with_one_line_per_problem_naming_the_flag(argv: list[str], flag: str) -> None:
    code, out, err = run_main(argv)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert lines
    assert all(line.startswith("smtp-diag: error: ") for line in lines)
    assert flag in err
    assert "Traceback" not in err
    assert "_" not in err.split("error: ", 1)[1].split(":", 1)[0]  # flags as typed, not field names


def test_every_config_problem_is_reported_at_once() -> None:
    code, _, err = run_main(["check", "--host", "h\r", "--port", "0", "--from-email", "a\n"])
    assert code == 2
    assert {line.split(":")[2].strip() for line in err.splitlines()} == {"--host", "--port", "--from-email"}


def test_password_env_must_be_set_and_non_empty() -> None:
    os.environ.pop("SMTP_DIAG_TEST_UNSET", None)
    code, _, err = run_main([*BASE, "--username", "u", "--password-env", "SMTP_DIAG_TEST_UNSET"])
    assert code == 2
    assert err == "smtp-diag: error: --password-env: environment variable SMTP_DIAG_TEST_UNSET is not set\n"
    code, _, err = run_main([*BASE, "--username", "u", "--password-stdin"], stdin="\n")
    assert code == 2
    assert "--password-stdin: no password on stdin" in err


def test_password_sources_are_exclusive() -> None:
    code, _, err = run_main([*BASE, "--username", "u", "--password-stdin", "--password-env", "X"])
    assert code == 2
    assert "not allowed with argument" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--ca-file: cannot read"),
        (b"not a certificate\n", "--ca-file: must contain at least one PEM certificate"),
        (b"\xff\xfe\x00binary", "--ca-file:"),
    ],
)
def test_ca_file_problems_are_usage_errors(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run_main([*BASE, "--ca-file", str(path)])
    assert code == 2
    assert err.startswith(f"smtp-diag: error: {message}")
    assert "Traceback" not in err


def test_usage_error_as_a_real_process_is_one_line_and_exit_2() -> None:
    proc = run_cli("check", "--host", "h", "--port", "abc", "--from-email", "a@b.c")
    assert proc.returncode == 2
    assert proc.stderr == "smtp-diag: error: --port: must be a whole number from 1 to 65535\n"
    assert proc.stdout == ""


def test_version_is_the_installed_package_version_as_in_the_openapi_document() -> None:
    code, out, _ = run_main(["--version"])
    assert code == 0
    assert out == f"smtp-diag {importlib.metadata.version('smtp-diag')}\n"
    assert openapi_document(token_required=False)["info"]["version"] == importlib.metadata.version("smtp-diag")


def test_help_exits_0() -> None:
    code, out, _ = run_main(["check", "--help"])
    assert code == 0
    assert "--password-stdin" in out
    assert "--password " not in out  # there is no flag that takes the password itself


# --- serve / demo -------------------------------------------------------------------------------------------


@pytest.fixture
def service_module(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str | None, int | None, bool]]:
    """A stand-in for diag.service.serve, whose real `main` would block running uvicorn: a mock by necessity."""
    calls: list[tuple[str | None, int | None, bool]] = []
    module = types.ModuleType("diag.service.serve")

    def fake_main(host: str, port: int, demo: bool) -> int:
        calls.append((host, port, demo))
        return 0

    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "diag.service.serve", module)
    return calls


def test_serve_and_demo_call_the_service_with_their_arguments(
    service_module: list[tuple[str | None, int | None, bool]],
) -> None:
    assert run_main(["serve"])[0] == 0
    assert run_main(["serve", "--host", "::1", "--port", "9000", "--demo"])[0] == 0
    assert run_main(["demo", "--port", "9001"])[0] == 0
    assert run_main(["serve", "--port", "0"])[0] == 0  # any free port, as DIAG_PORT=0 allows: the URL printed is real
    # Flags not given are None, so the service's DIAG_HOST / DIAG_PORT settings (default 127.0.0.1:8025) apply.
    assert service_module == [(None, None, False), ("::1", 9000, True), (None, 9001, True), (None, 0, False)]


def test_serve_without_the_service_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.modules[name] = None makes the import fail, as in an installation without the service."""
    monkeypatch.setitem(sys.modules, "diag.service.serve", None)
    code, _, err = run_main(["serve"])
    assert code == 2
    assert err.startswith("smtp-diag: error: the web service is not available")


# --- real runs ----------------------------------------------------------------------------------------------


@pytest.fixture
def anonymous_server() -> Iterator[FakeSMTP]:
    with FakeSMTP(auth="none") as srv:
        yield srv


@pytest.fixture
def auth_server() -> Iterator[FakeSMTP]:
    with FakeSMTP(auth="required", username=USER, password=PASSWORD) as srv:
        yield srv


def test_valid_anonymous_config_exits_0_with_a_warning(anonymous_server: FakeSMTP) -> None:
    proc = run_cli(*check_args(anonymous_server.host, anonymous_server.port, "--tls-mode", "none"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name in STAGE_NAMES:  # one live line per stage, in order, before the summary
        assert any(line.split()[1:2] == [name] for line in lines), name
    assert "Verdict: VALID" in proc.stdout
    assert "Warnings" in proc.stdout
    assert "anonymous" in proc.stdout.lower()
    assert proc.stderr == ""  # logs stay at warning level by default


def test_refused_port_exits_1_and_json_is_the_report(refused_port: int) -> None:
    port = refused_port
    proc = run_cli(*check_args("127.0.0.1", port, "--json"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)  # stdout is only the JSON report
    report = Report.from_dict(data)
    assert report.to_dict() == data
    assert data["verdict"] == "invalid"
    assert [s["name"] for s in data["stages"]] == list(STAGE_NAMES)
    assert data["config"]["port"] == port
    connect = report.stage("connect")
    assert connect.status.value == "failed"
    assert connect.finding is not None
    assert connect.finding.code == "connect.refused"


def test_authenticated_plaintext_server_with_password_from_env(auth_server: FakeSMTP) -> None:
    proc = run_cli(
        *check_args(auth_server.host, auth_server.port, "--tls-mode", "none", "--username", USER,
                    "--password-env", "SMTP_DIAG_TEST_PW", "--log-json"),
        env=cli_env(SMTP_DIAG_TEST_PW=PASSWORD),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verdict: VALID" in proc.stdout
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    assert [e["event"] for e in events if e["event"] == "stage_finished"] == ["stage_finished"] * len(STAGE_NAMES)
    assert events[-1]["event"] == "run_finished"
    assert events[-1]["verdict"] == "valid"
    assert_no_leak(proc.stdout, proc.stderr)


def test_wrong_password_exits_1_names_the_finding_and_leaks_nothing(auth_server: FakeSMTP) -> None:
    args = check_args(auth_server.host, auth_server.port, "--tls-mode", "none", "--username", USER,
                      "--password-stdin", "--log-json")  # fmt: skip
    outputs: list[str] = []
    for mode in ([], ["--json"], ["--markdown"]):
        proc = run_cli(*args, *mode, stdin="wrong-" + PASSWORD + "\n")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "auth.bad_credentials" in proc.stdout
        outputs += [proc.stdout, proc.stderr]
    wrong = "wrong-" + PASSWORD
    for out in outputs:
        assert wrong not in out
        assert base64.b64encode(f"\0{USER}\0{wrong}".encode()).decode() not in out
        assert base64.b64encode(wrong.encode()).decode() not in out
    assert_no_leak(*outputs)


def test_markdown_has_the_stage_table_and_the_transcript(auth_server: FakeSMTP) -> None:
    proc = run_cli(
        *check_args(auth_server.host, auth_server.port, "--tls-mode", "none", "--username", USER,
                    "--password-stdin", "--markdown"),
        stdin="not-the-password\n",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    md = proc.stdout
    assert md.startswith("**❌ Failed at auth:** ")  # the answer first, then the title
    assert "\n## ❌ SMTP check: **INVALID**" in md
    assert "| | Stage | Status | Time | Summary |" in md
    assert "| ❌ | auth | failed |" in md
    assert "**Cause:**" in md
    assert "**Fix:**" in md
    block = md.split("```text\n", 1)[1].split("\n```", 1)[0]
    assert any(line.strip().startswith("+") and " C: AUTH " in line for line in block.splitlines())
    assert any(" S: 535" in line for line in block.splitlines())
    assert_no_leak(md, proc.stderr)


def test_stages_stream_live_and_ctrl_c_exits_130_without_traceback() -> None:
    """The peer never greets, so the run is still in its connect stage when Ctrl-C comes. This test blocks
    on the process's output, so the peer runs on a loop in a thread of its own."""
    with Peer(never_greets) as listener:
        proc = subprocess.Popen(
            [sys.executable, "-m", "diag", *check_args("127.0.0.1", listener.port, "--timeout", "30")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=cli_env(),
        )
        try:
            assert proc.stdout is not None
            seen = []
            for line in proc.stdout:  # these arrive while the run is still waiting on the greeting
                seen.append(line)
                if " dns " in line:
                    break
            assert listener.call(listener.wait_connections(1, 20)), "the connect stage never connected"
            assert proc.poll() is None, "the run ended before its connect stage could be interrupted"
            assert [line.split()[1] for line in seen] == ["config", "dns"]
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130
    assert "interrupted" in err
    assert "Traceback" not in err
    assert "Verdict" not in out


@pytest.fixture
def starttls_server(tmp_path: Path) -> Iterator[FakeSMTP]:
    with FakeSMTP(auth="required", username=USER, password=PASSWORD, tls="starttls", ca_out=tmp_path / "ca.pem") as srv:
        yield srv


def test_starttls_with_ca_file_is_valid_and_the_summary_shows_tls_facts(starttls_server: FakeSMTP) -> None:
    assert starttls_server.ca_pem is not None
    proc = run_cli(
        *check_args(starttls_server.host, starttls_server.port, "--username", USER, "--password-stdin",
                    "--ca-file", str(starttls_server.ca_pem)),
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout.split("Verdict: VALID", 1)[1]
    assert "tls.tls_version" in summary
    assert "TLSv1" in summary
    assert "tls.certificate_subject" in summary
    assert "CN=localhost" in summary
    assert "tls.certificate_days_left" in summary
    assert "tls.after_tls_auth_mechanisms" in summary
    assert_no_leak(proc.stdout, proc.stderr)


def test_untrusted_certificate_fails_and_skip_verify_turns_it_into_a_warning(starttls_server: FakeSMTP) -> None:
    base = check_args(starttls_server.host, starttls_server.port, "--username", USER, "--password-stdin", "--json")
    strict = run_cli(*base, stdin=PASSWORD + "\n")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    tls = Report.from_dict(json.loads(strict.stdout)).stage("tls")
    assert tls.status.value == "failed"
    assert tls.finding is not None
    assert tls.finding.code.startswith("tls.")
    lenient = run_cli(*base, "--insecure-skip-tls-verify", stdin=PASSWORD + "\n")
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    tls = Report.from_dict(json.loads(lenient.stdout)).stage("tls")
    assert tls.status.value == "warning"
    assert_no_leak(strict.stdout, strict.stderr, lenient.stdout, lenient.stderr)


def test_the_product_runs_without_the_demo_extra() -> None:
    """aiosmtpd is the demo extra's, not the product's: with it missing (simulated by blocking its import in
    a fresh interpreter; uninstalling it from the shared venv is not an option in a test), the engine, the
    service and the CLI import, and `serve --demo` says what to install (exit 2) instead of a traceback."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['aiosmtpd'] = None\n"
        "import diag.runner, diag.service.app, diag.cli\n"
        "sys.exit(diag.cli.main(['serve', '--demo', '--port', '1']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "pip install 'smtp-diag[demo]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_imports_only_what_its_run_uses(anonymous_server: FakeSMTP) -> None:
    """Issue 13 (start-up time): a plaintext `check --json` to a name the hosts file answers, which logs
    nothing, loads neither structlog (nor rich through it), rich, dnspython, cryptography nor
    importlib.metadata nor uuid (with `platform`); each is imported where it is used (a log line, the live
    view, a DNS query, a certificate, nowhere). Nor the log-line explainer and its patterns (`explain`), nor
    the service."""
    heavy = ("structlog", "rich", "dns", "cryptography", "importlib.metadata", "uuid", "diag.explain", "diag.service")
    code = (
        "import json, sys\n"
        "import diag.cli\n"
        f"status = diag.cli.main({check_args('localhost', anonymous_server.port, '--tls-mode', 'none', '--json')!r})\n"
        f"loaded = sorted(m for m in {heavy!r} if m in sys.modules)\n"
        "print(json.dumps({'status': status, 'loaded': loaded}), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          cwd=REPO, env=cli_env())
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result["status"] == 0, done.stdout
    assert json.loads(done.stdout)["verdict"] == "valid"
    assert result["loaded"] == []


@pytest.mark.parametrize("mode", ["--json", "--markdown", None])
def test_the_command_writes_its_whole_answer_before_it_ends_its_process(
    anonymous_server: FakeSMTP, tmp_path: Path, mode: str | None
) -> None:
    """`smtp-diag` ends its process without Python's finalisation (diag/__main__.py, issue 13), so what the
    standard streams still buffer must be written first. Into a file and without PYTHONUNBUFFERED, stdout is
    block-buffered: a report cut short, or none at all, if the command forgot."""
    env = {k: v for k, v in cli_env().items() if k != "PYTHONUNBUFFERED"}
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    args = check_args("localhost", anonymous_server.port, "--tls-mode", "none", *([mode] if mode else []))
    with out_path.open("w") as out, err_path.open("w") as err:
        done = subprocess.run([sys.executable, "-m", "diag", *args], stdout=out, stderr=err, cwd=REPO, env=env,
                              timeout=50, check=False)  # fmt: skip
    written = out_path.read_text()
    assert done.returncode == 0, written + err_path.read_text()
    if mode == "--json":
        assert json.loads(written)["verdict"] == "valid"
    elif mode == "--markdown":
        # its last section, the configuration table, to its last row
        assert written.splitlines()[-1].startswith("| helo_name |"), written[-300:]
    else:
        assert "Verdict: VALID" in written
    assert err_path.read_text() == ""


def test_the_command_runs_with_the_collector_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """`smtp-diag` turns the cyclic garbage collector off before its imports (diag/__main__.py, issue 13).
    MOCK: the CLI is replaced to look at the collector at the moment a command would run, and the process is
    not ended; that a real `python -m diag` check writes its report is the test above."""
    import diag.__main__ as entry
    import diag.cli

    seen: list[bool] = []
    monkeypatch.setattr(diag.cli, "main", lambda: seen.append(gc.isenabled()) or 0)

    def end(code: int) -> NoReturn:
        raise SystemExit(code)

    monkeypatch.setattr(entry, "end_process", end)
    try:
        with pytest.raises(SystemExit) as ended:
            entry.main()
    finally:
        gc.enable()  # the test process's own collector
    assert ended.value.code == 0 and seen == [False]


def test_version_prints_the_tool_and_its_version() -> None:
    out = io.StringIO()
    assert main(["--version"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().strip() == f"smtp-diag {diag.__version__}"


def test_every_bad_input_is_reported_at_once_with_exit_2() -> None:
    """A bad port, a From that is no address, a host with a port in it and a username without a password:
    four lines in one go (not the first one, and not a failed run that exits 1)."""
    err = io.StringIO()
    code = main(["check", "--host", "smtp.example.com:587", "--port", "70000", "--from-email", "not-an-email",
                 "--username", "u"], stdout=io.StringIO(), stderr=err)
    assert code == 2
    lines = err.getvalue().splitlines()
    assert [line.split(":")[2].split()[0] for line in lines] == ["--username", "--port", "--host", "--from-email"]
    assert all(line.startswith("smtp-diag: error: ") for line in lines)


@pytest.mark.parametrize(("flag", "value"), [("--from-email", "not-an-email"), ("--host", "smtp://mail.example.com"),
                                             ("--recipient", "a@example.com, b@example.com")])
def test_an_unusable_value_is_a_usage_error_not_a_failed_run(flag: str, value: str) -> None:
    err = io.StringIO()
    argv = ["check", "--host", "smtp.example.com", "--port", "587", "--from-email", "a@example.com", flag, value]
    assert main(argv, stdout=io.StringIO(), stderr=err) == 2
    assert err.getvalue().startswith(f"smtp-diag: error: {flag}: ")


def run_on_a_tty(args: list[str]) -> tuple[int, str]:
    """The CLI with a pseudo-terminal as its stdout (what a person at a terminal has): exit code and output."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "diag", *args], stdout=follower, stderr=follower,
                            stdin=subprocess.DEVNULL, cwd=REPO, env=cli_env(TERM="xterm"))
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the follower side closed: the process is gone
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_a_silent_server_shows_a_spinner_with_the_seconds_on_a_terminal_only() -> None:
    """A server that never greets: on a terminal the wait is visible (stage, seconds, the step timeout);
    through a pipe there is no spinner and no control sequence."""
    with Peer(never_greets) as listener:  # on a loop of its own: this test blocks on the processes
        args = check_args("127.0.0.1", listener.port, "--tls-mode", "none", "--timeout", "1")
        code, tty_out = run_on_a_tty(args)
        assert code == 1, tty_out
        assert "connect: waiting " in tty_out and " s of the 1 s step timeout" in tty_out
        piped = run_cli(*args)
    assert piped.returncode == 1
    assert "waiting" not in piped.stdout and "\x1b[" not in piped.stdout


def test_the_json_report_says_where_the_check_ran(auth_server: FakeSMTP) -> None:
    proc = run_cli(*check_args(auth_server.host, auth_server.port, "--tls-mode", "none", "--json"))
    origin = json.loads(proc.stdout)["origin"]
    assert origin["tool"] == f"smtp-diag {diag.__version__}"
    assert origin["hostname"] == socket.gethostname()
    assert origin["source_address"] == "127.0.0.1"
