"""What the product would log (issue 10, item 3): for a failure under a Go profile, the report carries the
error text its Go client would write, filled in from the run, and every sink shows it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from diag.product_log import LEAD, _hostname_error, go_address
from diag.render import render_summary, to_markdown
from diag.report import Report
from diag.runner import run
from fake_smtp import FakeSMTP
from tests import certs
from tests.diag.conftest import PASSWORD, USER, config_for, tls_server
from tests.peer import Peer, SmtpScript


async def test_connection_refused_as_go_dials(refused_port: int) -> None:
    report = await run(config_for(refused_port, profile="palette"))
    failure = report.first_failure
    assert failure is not None and failure.name == "connect"
    assert failure.product_log == f"dial tcp 127.0.0.1:{refused_port}: connect: connection refused"
    assert failure.facts["dial_timeout_s"] == 10.0  # gomail's dial timeout, not the config's 5 s


async def test_generic_profile_has_no_product_line(refused_port: int) -> None:
    report = await run(config_for(refused_port))
    assert report.first_failure is not None and report.first_failure.product_log is None
    assert "product_log" not in report.first_failure.to_dict()


async def test_untrusted_certificate_as_crypto_tls_says_it(
    fake_smtp_factory: Callable[..., FakeSMTP], cert_dir: Path
) -> None:
    srv = tls_server(fake_smtp_factory, certs.ca_issued(cert_dir), tls="starttls")
    report = await run(config_for(srv.port, profile="palette"))
    assert report.stage("tls").product_log == (
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    )


async def test_plain_refused_in_clear_logs_unencrypted_connection() -> None:
    async with Peer(SmtpScript(("AUTH PLAIN",)), host="127.0.0.2") as peer:
        report = await run(config_for(peer.port, host="127.0.0.2", profile="palette", username=USER,
                                      password=PASSWORD))  # fmt: skip
    assert report.stage("auth").product_log == "unencrypted connection"


async def test_an_envelope_failure_is_wrapped_by_gomail() -> None:
    script = SmtpScript((), replies={"MAIL": "553 5.7.1 <alerts@example.com>: Sender address rejected"})
    async with Peer(script) as peer:
        report = await run(config_for(peer.port, profile="palette"))
    assert report.stage("mail_from").product_log == (
        "gomail: could not send email 1: 553 5.7.1 <alerts@example.com>: Sender address rejected"
    )


async def test_every_sink_shows_it(refused_port: int) -> None:
    report = await run(config_for(refused_port, profile="palette-vertex"))
    line = f"dial tcp 127.0.0.1:{refused_port}: connect: connection refused"
    as_json = report.to_dict()
    assert as_json["stages"][2]["product_log"] == line
    assert Report.from_dict(as_json).stage("connect").product_log == line  # a stored report keeps it
    assert f"**{LEAD}:** `{line}`" in to_markdown(report)
    console = Console(width=200, record=True)
    console.print(render_summary(report))
    assert f"{LEAD}: {line}" in console.export_text()


def test_hostname_errors_as_crypto_x509_words_them() -> None:
    assert _hostname_error("smtp.example.com", ["mail.example.com", "127.0.0.1"]) == (
        "certificate is valid for mail.example.com, not smtp.example.com"
    )
    assert _hostname_error("10.0.0.5", ["mail.example.com"]) == (
        "cannot validate certificate for 10.0.0.5 because it doesn't contain any IP SANs"
    )
    assert _hostname_error("smtp.example.com", []) == (
        "certificate is not valid for any names, but wanted to match smtp.example.com"
    )
    assert go_address("2001:db8::5", 587) == "[2001:db8::5]:587"
