"""Every bad flag or value of `smtp-diag` (run as a real process) ends with one line on stderr, exit 2,
nothing on stdout and no traceback; and no connection is made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fake_smtp import FakeSMTP
from tests.security import smtp_connections

GOOD = ["--profile", "generic", "--host", "127.0.0.1", "--from-email", "alerts@example.com", "--tls-mode", "none"]


def bad_invocations(port: str, tmp: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (argv after `smtp-diag`, a word the one error line must contain)."""
    binary, not_pem = tmp / "binary.pem", tmp / "not.pem"
    check = ["check", *GOOD]
    return {
        "no command": ([], "required"),
        "unknown command": (["probe"], "invalid choice"),
        "unknown flag": ([*check, "--port", port, "--bogus"], "--bogus"),
        "missing --host": (["check", "--port", port, "--from-email", "a@b.example"], "--host"),
        "missing --port": (["check", "--host", "127.0.0.1", "--from-email", "a@b.example"], "--port"),
        "missing --from-email": (["check", "--host", "127.0.0.1", "--port", port], "--from-email"),
        "port not a number": ([*check, "--port", "smtp"], "--port"),
        "port zero": ([*check, "--port", "0"], "--port"),
        "port too big": ([*check, "--port", "65536"], "--port"),
        "port negative": ([*check, "--port", "-1"], "--port"),
        "port superscript digit": ([*check, "--port", "²"], "--port"),
        "timeout not a number": ([*check, "--port", port, "--timeout", "soon"], "--timeout"),
        "timeout zero": ([*check, "--port", port, "--timeout", "0"], "--timeout"),
        "timeout nan": ([*check, "--port", port, "--timeout", "nan"], "--timeout"),
        "timeout inf": ([*check, "--port", port, "--timeout", "inf"], "--timeout"),
        "timeout huge": ([*check, "--port", port, "--timeout", "1e9"], "--timeout"),
        "tls mode": ([*check, "--port", port, "--tls-mode", "ssl"], "--tls-mode"),
        "dns server not an IP": ([*check, "--port", port, "--dns-server", "dns.example"], "--dns-server"),
        "ca file missing": ([*check, "--port", port, "--ca-file", str(tmp / "nope.pem")], "--ca-file"),
        "ca file binary": ([*check, "--port", port, "--ca-file", str(binary)], "--ca-file"),
        "ca file not PEM": ([*check, "--port", port, "--ca-file", str(not_pem)], "--ca-file"),
        "ca file a directory": ([*check, "--port", port, "--ca-file", str(tmp)], "--ca-file"),
        "username without password": ([*check, "--port", port, "--username", "u"], "--username"),
        "password without username": ([*check, "--port", port, "--password-env", "HOME"], "--username"),
        "password env unset": (
            [*check, "--port", port, "--username", "u", "--password-env", "SMTP_DIAG_SURELY_UNSET"],
            "--password-env",
        ),
        "password stdin empty": ([*check, "--port", port, "--username", "u", "--password-stdin"], "stdin"),
        "both password sources": (
            [*check, "--port", port, "--username", "u", "--password-stdin", "--password-env", "HOME"],
            "not allowed with",
        ),
        "send without recipient": ([*check, "--port", port, "--send"], "--recipient"),
        "json and markdown": ([*check, "--port", port, "--json", "--markdown"], "not allowed with"),
        "empty host": (["check", "--host", "", "--port", port, "--from-email", "a@b.example"], "--host"),
        "very long host": ([*check[:-6], "--host", "h" * 5000, "--from-email", "a@b.example", "--port", port],
                           "--host"),
        "serve port": (["serve", "--port", "70000"], "--port"),
        "serve port not a number": (["serve", "--port", "http"], "--port"),
    }


CASES = list(bad_invocations("25", Path("unused")))


@pytest.mark.parametrize("name", CASES)
def test_bad_invocation_is_one_line_and_exit_2(name: str, tmp_path: Path, fake_smtp: FakeSMTP) -> None:
    (tmp_path / "binary.pem").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "not.pem").write_text("hello")
    argv, word = bad_invocations(str(fake_smtp.port), tmp_path)[name]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIAG_")}
    with smtp_connections() as connections:
        result = subprocess.run(
            [sys.executable, "-m", "diag", *argv], input="", capture_output=True, text=True,
            timeout=30, check=False, env=env,
        )  # fmt: skip
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("smtp-diag: error: "), lines[0]
    assert word in lines[0], lines[0]
    assert connections() == 0
