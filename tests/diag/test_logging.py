"""Redaction and logging setup: via capture_logs, and via a real configured logger writing to StringIO."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import subprocess
import sys

import pytest
import structlog
from structlog.testing import capture_logs

from diag.logging import configure_logging, configure_logging_on_first_record, get_logger, redact, redact_text
from diag.secret import MASK, Secret

PASSWORD = "pw-7b21d4-Planted"
PLAIN_PAYLOAD = base64.b64encode(f"\0user\0{PASSWORD}".encode()).decode()


# --- the processor, through capture_logs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["password", "smtp_password", "passwd", "client_secret", "api_token", "Authorization", "api_key",
            "apikey", "cookie", "set_cookie"],
)  # fmt: skip
def test_sensitive_keys_are_masked(key: str) -> None:
    with capture_logs(processors=[redact]) as logs:
        structlog.get_logger().info("login", **{key: PASSWORD}, user="alice")
    assert logs[0][key] == MASK
    assert logs[0]["user"] == "alice"


def test_flags_about_secrets_are_kept() -> None:
    with capture_logs(processors=[redact]) as logs:
        structlog.get_logger().info("cfg", password_set=True, token=None)
    assert logs[0]["password_set"] is True
    assert logs[0]["token"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"C: AUTH PLAIN {PLAIN_PAYLOAD}", f"C: AUTH PLAIN {MASK}"),
        (f"sent auth plain {PLAIN_PAYLOAD} then quit", f"sent auth plain {MASK} then quit"),
        ("AUTH XOAUTH2 dXNlcj1hQGIuYwFhdXRoPUJlYXJlciB5YTI5AQE=", f"AUTH XOAUTH2 {MASK}"),
        ("250-AUTH LOGIN PLAIN CRAM-MD5", "250-AUTH LOGIN PLAIN CRAM-MD5"),  # capabilities, not a payload
        ("AUTH LOGIN", "AUTH LOGIN"),
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: Bearer {MASK}"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {MASK}"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_values_are_redacted_in_nested_structures_and_the_event_itself() -> None:
    with capture_logs(processors=[redact]) as logs:
        structlog.get_logger().info(
            f"got AUTH PLAIN {PLAIN_PAYLOAD}",
            transcript=[{"dir": "C", "text": f"AUTH PLAIN {PLAIN_PAYLOAD}"}],
            headers={"authorization": "Bearer tok-123", "accept": "text/html"},
            config={"host": "h", "password": Secret(PASSWORD)},
        )
    entry = logs[0]
    assert PLAIN_PAYLOAD not in repr(entry)
    assert entry["event"] == f"got AUTH PLAIN {MASK}"
    assert entry["transcript"] == [{"dir": "C", "text": f"AUTH PLAIN {MASK}"}]
    assert entry["headers"] == {"authorization": MASK, "accept": "text/html"}
    assert entry["config"] == {"host": "h", "password": MASK}


def test_secret_objects_become_the_mask() -> None:
    with capture_logs(processors=[redact]) as logs:
        structlog.get_logger().info("cfg", pw_holder=Secret(PASSWORD))
    assert logs[0]["pw_holder"] == MASK


# --- a real configured logger -------------------------------------------------------------------------------


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_have_level_utc_timestamp_and_context() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    structlog.contextvars.bind_contextvars(run_id="r-1")
    try:
        structlog.get_logger("diag.test").info("stage_finished", stage="dns", password=PASSWORD)
    finally:
        structlog.contextvars.clear_contextvars()
    (line,) = json_lines(stream)
    assert line["event"] == "stage_finished"
    assert line["level"] == "info"
    assert line["run_id"] == "r-1"
    assert isinstance(line["timestamp"], str)
    assert line["timestamp"].endswith("Z")
    assert line["password"] == MASK
    assert PASSWORD not in stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_level_filters_structlog_and_stdlib() -> None:
    stream = io.StringIO()
    configure_logging(json=True, level="warning", stream=stream)
    structlog.get_logger().info("quiet")
    logging.getLogger("aiosmtpd").info("quiet too")
    structlog.get_logger().warning("loud")
    assert [line["event"] for line in json_lines(stream)] == ["loud"]


@pytest.mark.usefixtures("restore_logging")
def test_tracebacks_are_dicts_without_locals_and_redacted() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)

    def login(password: str) -> None:
        secret_local = password  # would show up if locals were rendered
        raise RuntimeError(f"server rejected AUTH PLAIN {PLAIN_PAYLOAD} for {len(secret_local)} chars")

    try:
        login(PASSWORD)
    except RuntimeError:
        structlog.get_logger().exception("stage_crashed")
    (line,) = json_lines(stream)
    exc = line["exception"]
    assert isinstance(exc, list)
    assert exc[0]["exc_type"] == "RuntimeError"
    assert exc[0]["exc_value"] == f"server rejected AUTH PLAIN {MASK} for 17 chars"
    assert all("locals" not in frame for frame in exc[0]["frames"])
    assert exc[0]["frames"][-1]["name"] == "login"
    out = stream.getvalue()
    assert PASSWORD not in out
    assert PLAIN_PAYLOAD not in out


@pytest.mark.usefixtures("restore_logging")
def test_stdlib_loggers_come_out_as_redacted_json() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    uvicorn = logging.getLogger("uvicorn.error")
    uvicorn.warning("client sent %s", f"AUTH PLAIN {PLAIN_PAYLOAD}")
    try:
        raise ValueError(f"Bearer {PASSWORD}")
    except ValueError:
        logging.getLogger("asyncio").exception("task failed")
    first, second = json_lines(stream)
    assert first == {
        "event": f"client sent AUTH PLAIN {MASK}",
        "level": "warning",
        "logger": "uvicorn.error",
        "timestamp": first["timestamp"],
    }
    assert second["logger"] == "asyncio"
    assert second["exception"][0]["exc_value"] == f"Bearer {MASK}"  # type: ignore[index]
    assert PASSWORD not in stream.getvalue()
    assert PLAIN_PAYLOAD not in stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_console_rendering_for_humans_is_redacted_and_not_json() -> None:
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)
    structlog.get_logger().warning("auth_failed", password=PASSWORD, line=f"AUTH PLAIN {PLAIN_PAYLOAD}")
    out = stream.getvalue()
    assert "auth_failed" in out
    assert MASK in out
    assert "\x1b[" not in out  # a StringIO is not a terminal: no colours
    assert PASSWORD not in out
    assert PLAIN_PAYLOAD not in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


@pytest.mark.usefixtures("restore_logging")
def test_console_lines_with_an_exception_are_written_redacted_without_locals() -> None:
    """What `smtp-diag check` logs on a terminal: a record with a traceback (asyncio's "Exception in callback"
    on Ctrl-C, say) is written, not lost to a "--- Logging error ---", and no local variable shows."""
    stream = io.StringIO()
    configure_logging(json=False, stream=stream)

    def fail(secret_local: str) -> None:
        raise RuntimeError(f"failed after AUTH PLAIN {PLAIN_PAYLOAD}")

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            fail(PASSWORD)
        except RuntimeError:
            logging.getLogger("asyncio").error("Exception in callback", exc_info=True)
            structlog.get_logger().error("stage_crashed", exc_info=True)
    out = stream.getvalue()
    assert errors.getvalue() == ""  # logging reported no error of its own
    assert out.count("RuntimeError: failed after") == 2 and "Traceback (most recent call last)" in out
    assert PASSWORD not in out and PLAIN_PAYLOAD not in out


@pytest.mark.usefixtures("restore_logging")
def test_configuring_twice_does_not_duplicate_stdlib_lines() -> None:
    stream = io.StringIO()
    configure_logging(json=True, stream=io.StringIO())
    configure_logging(json=True, stream=stream)
    logging.getLogger("aiosmtpd").warning("once")
    assert [line["event"] for line in json_lines(stream)] == ["once"]


@pytest.mark.usefixtures("restore_logging")
def test_logging_configured_on_the_first_record_is_the_same_chain_redacted() -> None:
    """What `smtp-diag check` installs (issue 13: a run that logs nothing never imports structlog): nothing
    is configured until a record at the level comes; that record and the ones after it are written through
    structlog's chain, redacted, once each."""
    structlog.reset_defaults()
    stream = io.StringIO()
    configure_logging_on_first_record(json=True, level="warning", stream=stream)
    logging.getLogger("diag.runner").info("below the level")
    assert not structlog.is_configured()
    logging.getLogger("diag.runner").warning("stage_crashed line=%s", f"AUTH PLAIN {PLAIN_PAYLOAD}")
    assert structlog.is_configured()
    structlog.get_logger("diag.runner").warning("after", password=PASSWORD)
    lines = json_lines(stream)
    assert [line["event"].split()[0] for line in lines] == ["stage_crashed", "after"]
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "diag.runner"
    assert lines[1]["password"] == MASK
    assert PLAIN_PAYLOAD not in stream.getvalue() and PASSWORD not in stream.getvalue()
    configure_logging(json=True, stream=stream)  # replaces the stand-in: no line twice
    assert len([h for h in logging.getLogger().handlers if h.get_name() == "diag.logging"]) == 1


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging(json=True, level="chatty", stream=io.StringIO())


def _run_sync_in_a_fresh_interpreter(setup: str) -> subprocess.CompletedProcess[str]:
    """The README's Python use, in a process of its own (structlog's configuration is process-wide)."""
    code = (
        f"{setup}\n"
        "from diag.config import parse_config\n"
        "from diag.runner import run_sync\n"
        "report = run_sync(parse_config({'host': '127.0.0.1', 'port': 1, 'from_email': 'a@example.com',\n"
        "                                'username': 'u', 'password': 'pw-PLANTED-in-a-library-run'}))\n"
        "assert report.verdict == 'invalid'\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)


def test_a_library_says_nothing_unless_its_user_configures_logging() -> None:
    done = _run_sync_in_a_fresh_interpreter("")
    assert done.stdout == "" and done.stderr == ""


def test_a_user_who_configures_stdlib_logging_gets_the_runs_lines_redacted() -> None:
    done = _run_sync_in_a_fresh_interpreter("import logging; logging.basicConfig(level=logging.INFO)")
    assert done.stdout == ""
    assert "run_finished" in done.stderr and "finding='connect.refused'" in done.stderr
    assert "PLANTED" not in done.stderr


def test_a_user_who_configures_structlog_gets_the_runs_events() -> None:
    setup = ("import sys, structlog; structlog.configure(processors=[structlog.processors.JSONRenderer()], "
             "logger_factory=structlog.PrintLoggerFactory(sys.stderr))")
    done = _run_sync_in_a_fresh_interpreter(setup)
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert "stage_finished" in events and events[-1] == "run_finished"


# --- diag's own loggers keep their bound structlog logger only while the configuration stays ------------------


@pytest.mark.usefixtures("restore_logging")
def test_library_logger_lines_follow_every_reconfiguration() -> None:
    """LibraryLogger keeps the structlog logger it assembled (issue 13: the per-line proxy cost the service's
    loop 4 us a line): each way of reconfiguring must still take effect from the next line on. These pin
    behaviour kept through the change; each fails on a cache that ignores reconfiguration."""
    log = get_logger("diag.test").bind(run_id="r-1")
    first, second, third = io.StringIO(), io.StringIO(), io.StringIO()

    configure_logging(json=True, level="info", stream=first)
    log.info("one", password=PASSWORD)
    configure_logging(json=True, level="warning", stream=second)  # a new stream and a new level
    log.info("below the new level")
    log.warning("two", stage="dns")
    with capture_logs() as captured:  # edits the configured processor list in place
        log.warning("captured", stage="tls")
    log.warning("three")
    # An application configuring structlog its own way (the README's Python use).
    structlog.configure(processors=[structlog.processors.JSONRenderer()],
                        logger_factory=structlog.WriteLoggerFactory(file=third))
    log.warning("four", token=PASSWORD)  # the level stays: they did not configure a wrapper class

    assert [(line["event"], line["run_id"]) for line in json_lines(first)] == [("one", "r-1")]
    assert json_lines(first)[0]["password"] == MASK
    assert [(line["event"], line["level"], line.get("stage")) for line in json_lines(second)] == [
        ("two", "warning", "dns"), ("three", "warning", None)
    ]
    assert captured == [{"event": "captured", "run_id": "r-1", "stage": "tls", "log_level": "warning"}]
    assert json_lines(third) == [{"run_id": "r-1", "token": PASSWORD, "event": "four"}]  # their chain: no redact


@pytest.mark.usefixtures("restore_logging")
def test_library_logger_goes_back_to_stdlib_when_structlog_is_reset(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("diag.test")
    configure_logging(json=True, level="info", stream=io.StringIO())
    log.info("through structlog")
    structlog.reset_defaults()
    with caplog.at_level(logging.INFO, logger="diag.test"):
        log.info("through stdlib", stage="dns", password=PASSWORD)
    assert [r.getMessage() for r in caplog.records] == [f"through stdlib stage='dns' password='{PASSWORD}'"]
