"""The config stage, and the dns stage's runner-level failures, through `diag.runner.run` for real.

Configs are built by hand (not through parse_config), as a Python caller would: the config stage is the
last line of defence before a socket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
from structlog.testing import capture_logs

from diag.config import SmtpConfig, TlsMode
from diag.policy import EgressPolicy
from diag.report import Status
from diag.runner import run
from diag.secret import Secret
from fake_smtp import FakeSMTP
from tests.diag.conftest import (
    FROM,
    PASSWORD,
    USER,
    assert_failed_at,
    assert_warning_at,
    config_for,
)
from tests.dns_responder import DnsResponder, point_dns_stage_at
from tests.peer import Peer, says


def test_internationalised_host_names_are_host_names() -> None:
    """People type their domain as they read it; it is valid in its IDNA form (xn--bcher-kva.example)."""
    from diag.stages.config_check import host_problem

    assert host_problem("smtp.bücher.example") is None
    assert host_problem("smtp.example.com") is None


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("smtp://mail.example.com", "scheme"),
        ("mail.example.com:587", "contains a port"),
        ("alerts@example.com", "e-mail address"),
        ("mail example.com", "spaces"),
        ("-bad-.example.com", "not a valid host name"),
        ("smtp." + "\u00fc" * 70 + ".example", "not a valid internationalised host name"),
        ("", "empty"),
    ],
)
async def test_invalid_host(host: str, why: str) -> None:
    report = await run(config_for(587, host=host))
    result = assert_failed_at(report, "config", "config.invalid_host")
    assert why in result.summary
    assert result.finding is not None
    assert repr(host) in result.finding.cause
    assert "no scheme" in result.finding.fix and "no port" in result.finding.fix


@pytest.mark.parametrize("port", [0, 65536, -25])
async def test_invalid_port(port: int) -> None:
    report = await run(config_for(port))
    result = assert_failed_at(report, "config", "config.invalid_port")
    assert result.finding is not None
    assert f"Port {port} is not a valid TCP port" in result.finding.cause
    assert "587" in result.finding.fix


@pytest.mark.parametrize("from_email", ["Alerts <alerts@example.com>", "alerts", "a@b@example.com", "a b@c.com"])
async def test_invalid_from_email(from_email: str) -> None:
    report = await run(config_for(587, from_email=from_email))
    result = assert_failed_at(report, "config", "config.invalid_from_email")
    assert result.finding is not None
    assert repr(from_email) in result.finding.cause
    assert "bare address" in result.finding.fix


@pytest.mark.parametrize(
    ("username", "password", "given"),
    [(USER, None, "username without a password"), (None, PASSWORD, "password without a username")],
)
async def test_partial_credentials(username: str | None, password: str | None, given: str) -> None:
    report = await run(config_for(587, username=username, password=password))
    result = assert_failed_at(report, "config", "config.partial_credentials")
    assert given in result.summary
    assert result.finding is not None and given in result.finding.cause
    assert PASSWORD not in str(report.to_dict())


@pytest.mark.parametrize("helo_name", ["é.example", "a b", "-bad", "a..b"])
async def test_helo_name_that_is_no_host_name(helo_name: str) -> None:
    """parse_config refuses these; a config built by hand must still stop before any socket."""
    report = await run(config_for(587, helo_name=helo_name))
    result = assert_failed_at(report, "config", "config.invalid_helo_name")
    assert report.stage("dns").status is Status.SKIPPED
    assert result.finding is not None and "HELO name" in result.finding.cause


GARBAGE_PEM = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


async def test_unusable_ca_bundle_is_a_config_finding_not_a_crash() -> None:
    """parse_config refuses it (422 / exit 2); a config built by hand stops at the config stage."""
    report = await run(config_for(465, ca_bundle=GARBAGE_PEM))
    result = assert_failed_at(report, "config", "config.invalid_ca_bundle")
    assert result.finding is not None and "BEGIN CERTIFICATE" in result.finding.fix
    assert report.stage("connect").status is Status.SKIPPED


def test_parse_config_refuses_an_unusable_ca_bundle() -> None:
    from diag.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config({"host": "mail.example.com", "port": 587, "from_email": FROM, "ca_bundle": GARBAGE_PEM})
    assert [e.field for e in caught.value.errors] == ["ca_bundle"]
    assert "not a usable CA bundle" in caught.value.errors[0].message


async def test_send_without_recipient_is_invalid_recipient() -> None:
    report = await run(config_for(587, send_test_message=True))
    result = assert_failed_at(report, "config", "config.invalid_recipient")
    assert "test recipient" in result.summary


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("from_email", f"{FROM}\r\nRCPT TO:<victim@example.net>"),
        ("helo_name", "client.example\nMAIL FROM:<x@y.example>"),
        ("recipient", "ops@example.net\x00"),
        ("username", "alice\r\n"),
    ],
)
async def test_forbidden_characters_reach_no_socket(
    fake_smtp_factory: Callable[..., FakeSMTP], field: str, value: str
) -> None:
    srv = fake_smtp_factory()
    values: dict[str, object] = {"host": "127.0.0.1", "port": srv.port, "from_email": FROM, field: value}
    if field == "username":
        values["password"] = Secret(PASSWORD)
    injected = SmtpConfig(**values)  # type: ignore[arg-type]
    with capture_logs() as server_logs:
        report = await run(injected)
    result = assert_failed_at(report, "config", "config.forbidden_characters")
    assert field in result.summary and "nothing was sent" in result.summary
    assert result.finding is not None and f"The field {field}" in result.finding.cause
    assert "command injection" in result.finding.cause
    assert [e for e in server_logs if e["event"] == "connect"] == []  # the fake server saw nothing
    assert all(not s.transcript for s in report.stages)

    # The control: the same server, a clean config, and the server does log the connection.
    with capture_logs() as control_logs:
        clean = await run(config_for(srv.port, tls_mode="none"))
    assert clean.stage("connect").status is Status.PASSED
    assert [e for e in control_logs if e["event"] == "connect"]


async def test_anonymous_is_a_warning_and_the_run_goes_on(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory()
    report = await run(config_for(srv.port, tls_mode="none"))
    result = assert_warning_at(report, "config", "config.anonymous")
    assert result.finding is not None
    assert "security risk" in result.finding.cause
    assert "authenticated SMTP" in result.finding.fix
    assert report.verdict == "valid"
    assert report.stage("mail_from").status is Status.PASSED


async def test_insecure_skip_verify_is_a_warning(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(auth="required", tls="starttls", username=USER, password=PASSWORD)
    report = await run(config_for(srv.port, username=USER, password=PASSWORD, insecure_skip_tls_verify=True))
    result = assert_warning_at(report, "config", "config.insecure_skip_verify")
    assert result.finding is not None
    assert "impersonate" in result.finding.cause and "CA bundle" in result.finding.fix
    assert report.verdict == "valid"
    assert report.stage("auth").status is Status.PASSED


@pytest.mark.parametrize(
    ("port", "mode", "says"),
    [
        (465, TlsMode.STARTTLS, "Port 465 expects implicit TLS"),
        (465, TlsMode.NONE, "Port 465 expects implicit TLS"),
        (587, TlsMode.IMPLICIT, "Implicit TLS (SMTPS) is configured on port 587"),
        (25, TlsMode.IMPLICIT, "Implicit TLS (SMTPS) is configured on port 25"),
    ],
)
async def test_port_tls_mismatch_is_a_warning(port: int, mode: TlsMode, says: str) -> None:
    """Only the config stage is asserted: nothing of ours listens on these well-known loopback ports."""
    report = await run(config_for(port, username=USER, password=PASSWORD, tls_mode=mode, timeout_s=0.5))
    result = assert_warning_at(report, "config", "config.port_tls_mismatch")
    assert result.finding is not None
    assert says in result.finding.cause
    assert "465" in result.finding.fix and "587" in result.finding.fix
    assert "TLS mode does not match the port" in result.summary


async def test_several_config_warnings_are_all_reported() -> None:
    report = await run(config_for(465, tls_mode="starttls", insecure_skip_tls_verify=True, timeout_s=0.5))
    result = assert_warning_at(report, "config", "config.port_tls_mismatch")
    extra = [f.code for f in result.additional_findings]
    assert extra == ["config.insecure_skip_verify", "config.anonymous"]
    assert [f.code for f in result.findings] == ["config.port_tls_mismatch", *extra]
    assert all(f.cause and f.fix for f in result.additional_findings)
    assert [f["code"] for f in report.to_dict()["stages"][0]["additional_findings"]] == extra
    assert "certificate verification is off" in result.summary and "anonymous SMTP" in result.summary


async def test_a_clean_config_passes(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    srv = fake_smtp_factory(auth="required", tls="off", username=USER, password=PASSWORD)
    report = await run(config_for(srv.port, username=USER, password=PASSWORD, tls_mode="none"))
    config = report.stage("config")
    assert config.status is Status.PASSED and config.finding is None
    assert config.facts["anonymous"] is False and config.facts["effective_tls_mode"] == "none"


# -- dns through the runner (the stage itself is covered by tests/diag/test_dns.py) --------------------


@pytest.fixture
def dns_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DnsResponder]:
    zone = {"mail.test.": {"A": ["127.0.0.1"]}}
    with DnsResponder(zone) as responder:
        point_dns_stage_at(responder, monkeypatch)
        yield responder


async def test_dns_nxdomain_stops_before_connecting(dns_server: DnsResponder) -> None:
    report = await run(config_for(587, host="nosuchhost.test", dns_servers=("127.0.0.1",), timeout_s=2.0))
    result = assert_failed_at(report, "dns", "dns.nxdomain")
    assert "does not exist" in result.summary
    assert result.finding is not None
    assert "nosuchhost.test" in result.finding.cause and "nslookup nosuchhost.test" in result.finding.fix
    assert sorted(dns_server.asked("nosuchhost.test.")) == ["A", "AAAA"]
    assert report.stage("connect").transcript == ()


async def test_dns_policy_denied_makes_no_connection(
    dns_server: DnsResponder, start_peer: Callable[..., Awaitable[Peer]]
) -> None:
    peer = await start_peer(says(b"220 would-be victim ESMTP\r\n"))
    config = config_for(peer.port, host="mail.test", dns_servers=("127.0.0.1",), timeout_s=2.0)
    report = await run(config, policy=EgressPolicy(deny_networks=["127.0.0.0/8"]))
    result = assert_failed_at(report, "dns", "dns.policy_denied")
    assert result.finding is not None
    assert "127.0.0.1 is in the denied network 127.0.0.0/8" in result.finding.cause
    assert "No connection was made" in result.summary
    assert peer.connections == 0

    # The control: without the deny rule the same name reaches the same listener.
    allowed = await run(config)
    assert allowed.stage("dns").status is Status.PASSED
    assert peer.connections >= 1



async def test_a_config_built_by_hand_with_plain_values_runs() -> None:
    """The README's Python use: SmtpConfig(..., tls_mode="none", password="...") must not crash a stage."""
    from diag.config import SmtpConfig, TlsMode
    from diag.runner import run
    from diag.secret import Secret

    config = SmtpConfig("127.0.0.1", 1, "a@example.com", username="u", password="pw",  # type: ignore[arg-type]
                        tls_mode="none", dns_servers=["192.0.2.53"], timeout_s=2)  # type: ignore[arg-type]
    assert config.tls_mode is TlsMode.NONE and config.password == Secret("pw") and "pw" not in repr(config)
    assert config.dns_servers == ("192.0.2.53",)
    report = await run(config)
    stages = {s.name: s for s in report.stages}
    assert stages["config"].finding is None or stages["config"].finding.code != "config.internal_error"
    assert stages["connect"].finding is not None and stages["connect"].finding.code == "connect.refused"


def test_a_config_built_by_hand_with_an_unknown_tls_mode_is_refused_at_once() -> None:
    from diag.config import SmtpConfig

    with pytest.raises(ValueError, match="tls_mode must be one of"):
        SmtpConfig("smtp.example.com", 587, "a@example.com", tls_mode="ssl")  # type: ignore[arg-type]
