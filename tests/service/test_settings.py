from __future__ import annotations

from pathlib import Path

import pytest

from diag.service.serve import exposure_warning
from diag.service.settings import DEFAULT_ALLOWED_PORTS, Rate, Settings, SettingsError, is_loopback_host

TOKEN = "tok-PLANTED-0123456789abcdef"


def test_defaults_without_environment() -> None:
    settings = Settings.from_env({})
    assert settings.db_path == Path("var/smtp-diag.sqlite3")
    assert settings.retention_days == 30
    assert settings.store_max_mb == 512
    assert settings.api_token is None
    assert settings.allowed_ports == DEFAULT_ALLOWED_PORTS == {25, 465, 587, 2525}
    assert settings.rate_limit_per_client == Rate(30, 60.0)
    assert settings.rate_limit_per_target == Rate(10, 60.0)
    assert settings.max_concurrent_runs == 16
    assert (settings.max_queued_runs, settings.run_queue_wait_s) == (64, 15.0)
    assert (settings.host, settings.port, settings.log_level) == ("127.0.0.1", 8025, "INFO")
    assert settings.allowed_hosts is None  # derived from the address listened on
    assert (settings.max_connections, settings.keep_alive_s, settings.header_timeout_s) == (1000, 5, 10)


def test_every_variable_is_read() -> None:
    settings = Settings.from_env({
        "DIAG_DB_PATH": "/tmp/x/reports.db",
        "DIAG_RETENTION_DAYS": "7",
        "DIAG_STORE_MAX_MB": "64",
        "DIAG_API_TOKEN": TOKEN,
        "DIAG_ALLOW_NETWORKS": "10.0.0.0/8, 192.168.1.7",
        "DIAG_DENY_NETWORKS": "10.1.0.0/16",
        "DIAG_ALLOWED_PORTS": "587, 2525",
        "DIAG_RATE_LIMIT_PER_CLIENT": "5/s",
        "DIAG_RATE_LIMIT_PER_TARGET": "100/hour",
        "DIAG_MAX_CONCURRENT_RUNS": "3",
        "DIAG_MAX_QUEUED_RUNS": "10",
        "DIAG_RUN_QUEUE_WAIT_S": "30",
        "DIAG_LOG_LEVEL": "debug",
        "DIAG_HOST": "0.0.0.0",
        "DIAG_PORT": "9000",
        "DIAG_ALLOWED_HOSTS": "diag.example.com",
        "DIAG_MAX_CONNECTIONS": "500",
        "DIAG_KEEP_ALIVE_S": "15",
        "DIAG_HEADER_TIMEOUT_S": "3",
    })
    assert settings.db_path == Path("/tmp/x/reports.db")
    assert settings.retention_days == 7
    assert settings.store_max_mb == 64
    assert settings.api_token is not None and settings.api_token.matches(TOKEN)
    assert settings.allow_networks == ("10.0.0.0/8", "192.168.1.7/32")
    assert settings.deny_networks == ("10.1.0.0/16",)
    assert settings.allowed_ports == {587, 2525}
    assert settings.rate_limit_per_client == Rate(5, 1.0)
    assert settings.rate_limit_per_target == Rate(100, 3600.0)
    assert settings.max_concurrent_runs == 3
    assert (settings.max_queued_runs, settings.run_queue_wait_s) == (10, 30.0)
    assert (settings.log_level, settings.host, settings.port) == ("DEBUG", "0.0.0.0", 9000)
    assert settings.allowed_hosts == ("diag.example.com",)
    assert (settings.max_connections, settings.keep_alive_s, settings.header_timeout_s) == (500, 15, 3)


def test_zero_queued_runs_turns_the_queue_off() -> None:
    assert Settings.from_env({"DIAG_MAX_QUEUED_RUNS": "0"}).max_queued_runs == 0


def test_any_port_with_a_star() -> None:
    assert Settings.from_env({"DIAG_ALLOWED_PORTS": "*"}).allowed_ports is None


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DIAG_RETENTION_DAYS", "a month"),
        ("DIAG_RETENTION_DAYS", "0"),
        ("DIAG_STORE_MAX_MB", "a lot"),
        ("DIAG_STORE_MAX_MB", "0"),
        ("DIAG_STORE_MAX_MB", "1.5"),
        ("DIAG_STORE_MAX_MB", "-512"),
        ("DIAG_API_TOKEN", "short"),
        ("DIAG_API_TOKEN", "has a space in the middle of it"),
        ("DIAG_ALLOW_NETWORKS", "10.0.0.0/33"),
        ("DIAG_DENY_NETWORKS", "example.com"),
        ("DIAG_ALLOWED_PORTS", "25,70000"),
        ("DIAG_ALLOWED_PORTS", "smtp"),
        ("DIAG_RATE_LIMIT_PER_CLIENT", "lots"),
        ("DIAG_RATE_LIMIT_PER_TARGET", "0/min"),
        ("DIAG_RATE_LIMIT_PER_TARGET", "10/fortnight"),
        ("DIAG_MAX_CONCURRENT_RUNS", "-1"),
        ("DIAG_MAX_QUEUED_RUNS", "-1"),
        ("DIAG_MAX_QUEUED_RUNS", "10001"),
        ("DIAG_MAX_QUEUED_RUNS", "plenty"),
        ("DIAG_RUN_QUEUE_WAIT_S", "0"),
        ("DIAG_RUN_QUEUE_WAIT_S", "601"),
        ("DIAG_RUN_QUEUE_WAIT_S", "1.5"),
        ("DIAG_LOG_LEVEL", "chatty"),
        ("DIAG_PORT", "80000"),
        ("DIAG_HOST", "two words"),
        ("DIAG_MAX_CONNECTIONS", "0"),
        ("DIAG_KEEP_ALIVE_S", "forever"),
        ("DIAG_HEADER_TIMEOUT_S", "0"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_token_never_prints() -> None:
    settings = Settings.from_env({"DIAG_API_TOKEN": TOKEN})
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.api_token)
    assert TOKEN not in f"{settings.api_token}"
    assert settings.api_token is not None
    assert not settings.api_token.matches(TOKEN + "x")


def test_a_rejected_token_is_not_echoed() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DIAG_API_TOKEN": "secret-ish"})
    assert "secret-ish" not in str(caught.value)


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("0.0.0.0", False), ("192.168.1.2", False), ("::", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_exposed_without_token_warns_loudly() -> None:
    warning = exposure_warning("0.0.0.0", Settings())
    assert warning is not None and "WITHOUT a token" in warning and "DIAG_API_TOKEN" in warning
    assert exposure_warning("127.0.0.1", Settings()) is None
    assert exposure_warning("0.0.0.0", Settings.from_env({"DIAG_API_TOKEN": TOKEN})) is None
