"""The fake-smtp command as a subprocess: printed listeners, a real send, clean stop on signals."""

import os
import signal
import smtplib
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.fake_smtp.clients import make_message

PASSWORD = "cli-unique-Pa55word-7f3a"
INBOX_TOKEN = "cli-inbox-T0ken-unique-41d2"


def start(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], dict[str, list[str]]]:
    """Start the CLI and read its listener lines up to 'ready' (bounded by pytest's timeout)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fake_smtp.cli", "--port", "0", "--tls-port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "FAKE_SMTP_PASSWORD": PASSWORD, **(env or {})},
    )
    assert process.stdout is not None
    listeners: dict[str, list[str]] = {}
    for line in process.stdout:
        if line.strip() == "ready":
            return process, listeners
        kind, *rest = line.split()
        listeners[kind] = rest
    raise AssertionError(f"exited early: {process.wait()} {read_all(process.stderr)}")


def read_all(stream: IO[str] | None) -> str:
    return "" if stream is None else stream.read()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_and_stops_cleanly(signum: signal.Signals, tmp_path: Path) -> None:
    process, listeners = start("--auth", "required", "--tls", "both", "--username", "bob",
                               "--ca-out", str(tmp_path / "ca.pem"), "--maildir", str(tmp_path / "md"))
    try:
        host, port = listeners["smtp"]
        assert listeners["smtps"][0] == host and listeners["ca-pem"] == [str(tmp_path / "ca.pem")]
        import ssl

        context = ssl.create_default_context(cafile=listeners["ca-pem"][0])
        with smtplib.SMTP(host, int(port), timeout=5) as smtp:
            smtp.starttls(context=context)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                smtp.login("bob", "wrong-" + PASSWORD)
            smtp.login("bob", PASSWORD)
            smtp.send_message(make_message(subject="via cli"))
    finally:
        process.send_signal(signum)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "message accepted" in err and "auth" in err and "disconnect" in err
    assert "success=False" in err and "success=True" in err
    assert PASSWORD not in out + err
    assert list((tmp_path / "md" / "new").iterdir())



@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_stops_on_a_signal_that_comes_right_after_sigcont(signum: signal.Signals) -> None:
    """Stopped (as a debugger or a container runtime may), then continued and told to stop at once: the
    main thread still has SIGCONT pending when the stop signal comes, so the kernel may hand it to the
    server's thread. A Python handler then waited for a main thread that nothing woke: the process served
    on until killed (seen ~1 time in 2 on a busy machine). Eight processes, each must end within 10 s."""
    for _ in range(8):
        process, _ = start()
        try:
            process.send_signal(signal.SIGSTOP)
            status = Path(f"/proc/{process.pid}/status")
            while "\tT (stopped)" not in status.read_text():  # bounded by pytest's timeout
                os.sched_yield()
            process.send_signal(signal.SIGCONT)
            process.send_signal(signum)
            process.communicate(timeout=10)
        finally:
            process.kill()
        assert process.returncode == 0

def test_cli_fault_and_http_port() -> None:
    process, listeners = start("--fault", "mail_from=reply:550", "--http-port", "0")
    try:
        host, port = listeners["smtp"]
        assert listeners["http"][0].startswith("http://127.0.0.1:")
        assert "smtps" not in listeners and "ca-pem" not in listeners
        with smtplib.SMTP(host, int(port), timeout=5) as smtp:
            smtp.ehlo()
            assert smtp.mail("a@x.test")[0] == 550
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "WARNING" not in err  # loopback: nothing to warn about


def loopback_inbox(listeners: dict[str, list[str]]) -> httpx.Client:
    """The inbox of a server bound to 0.0.0.0, reached over loopback."""
    port = listeners["http"][0].rsplit(":", 1)[1]
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)


def test_cli_warns_loudly_on_a_non_loopback_bind_with_an_open_inbox() -> None:
    process, listeners = start("--host", "0.0.0.0", "--http-port", "0")
    try:
        assert listeners["smtp"][0] == "0.0.0.0"
        with loopback_inbox(listeners) as http:
            # Bound beyond loopback, any IP literal is a fine Host (never DNS rebinding); names are not.
            assert http.get("/messages", headers={"Host": "192.0.2.7:8025"}).json() == []
            assert http.get("/messages", headers={"Host": "evil.example"}).status_code == 400
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "WARNING: fake-smtp listens on 0.0.0.0, reachable from other machines" in err
    assert "NO TOKEN" in err and "READ and DELETE" in err and "--inbox-token-env" in err
    assert err.count("\n!! ") >= 4  # several lines, hard to miss
    assert "listening on a non-loopback address" in err  # the library's own log line says it too
    assert "WARNING" not in out  # stdout stays the machine-readable listener lines


def test_cli_inbox_token_from_the_environment() -> None:
    process, listeners = start(
        "--host", "0.0.0.0", "--http-port", "0", "--inbox-token-env", "FAKE_INBOX_TOKEN",
        "--inbox-allowed-host", "fake-smtp.test", env={"FAKE_INBOX_TOKEN": INBOX_TOKEN},
    )
    try:
        with loopback_inbox(listeners) as http:
            http.headers["Host"] = "fake-smtp.test"
            assert http.get("/messages").status_code == 401
            assert http.get("/messages", headers={"Authorization": "Bearer nope"}).status_code == 401
            assert http.get("/messages", headers={"Authorization": f"Bearer {INBOX_TOKEN}"}).json() == []
            assert http.get("/messages", headers={"Authorization": f"Bearer {INBOX_TOKEN}",
                                                  "Host": "other.test"}).status_code == 400
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "WARNING: fake-smtp listens on 0.0.0.0" in err
    assert "NO TOKEN" not in err and "needs the bearer token" in err
    assert INBOX_TOKEN not in out + err


def test_cli_inbox_token_needs_the_variable_and_the_inbox() -> None:
    base = [sys.executable, "-m", "fake_smtp.cli", "--inbox-token-env", "FAKE_INBOX_TOKEN"]
    env = {k: v for k, v in os.environ.items() if k != "FAKE_INBOX_TOKEN"}
    unset = subprocess.run([*base, "--http-port", "0"], capture_output=True, text=True, timeout=15, env=env)
    no_inbox = subprocess.run(base, capture_output=True, text=True, timeout=15,
                              env={**env, "FAKE_INBOX_TOKEN": INBOX_TOKEN})
    assert unset.returncode == no_inbox.returncode == 2
    assert "FAKE_INBOX_TOKEN is not set or empty" in unset.stderr
    assert "inbox_token needs http_port" in no_inbox.stderr
    assert INBOX_TOKEN not in no_inbox.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "auth=explode"], "unknown fault action 'explode'"),
        (["--port", "70000"], "invalid port"),
        (["--tls", "ssl"], "invalid choice"),
        (["--cert", "only.pem"], "--cert and --key go together"),
        (["--require-starttls"], "require_starttls"),
        (["--max-size", "0"], "positive"),
        (["--max-inbox-bytes", "1000"], "max_inbox_bytes (1000) must be at least max_size"),
        (["--inbox-allowed-host", "bad host"], "'bad host' is not a host name"),
        (["--event-loop", "trio"], "invalid choice"),
    ],
)
def test_cli_bad_arguments_give_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fake_smtp.cli", *args], capture_output=True, text=True,
                          timeout=15)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("fake-smtp: error: ")
    assert message in done.stderr


def test_cli_event_loop_asyncio_runs_and_says_so() -> None:
    """The listening line names the loop; --event-loop asyncio keeps asyncio's even with uvloop installed."""
    process, listeners = start("--event-loop", "asyncio")
    try:
        with smtplib.SMTP(listeners["smtp"][0], int(listeners["smtp"][1]), timeout=5) as smtp:
            smtp.send_message(make_message(subject="on asyncio"))
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0
    assert "loop=asyncio" in err and "message accepted" in err


def test_cli_port_in_use_is_a_one_line_error() -> None:
    process, listeners = start()
    try:
        done = subprocess.run([sys.executable, "-m", "fake_smtp.cli", "--port", listeners["smtp"][1]],
                              capture_output=True, text=True, timeout=15)
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert done.returncode == 1
    assert "cannot start" in done.stderr
