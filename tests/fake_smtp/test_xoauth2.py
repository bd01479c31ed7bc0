"""AUTH XOAUTH2: curl (not ours) logs in with a bearer token; bad tokens get Gmail's or Microsoft's answer."""

from __future__ import annotations

import base64
import smtplib
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fake_smtp import FakeSMTP
from tests.fake_smtp.clients import make_message, trusting
from tests.fake_smtp.real_clients import run_tool
from tests.fake_smtp.real_clients import swaks as run_swaks

Factory = Callable[..., FakeSMTP]
USER, TOKEN = "alice@example.com", "ya29.token-7f3c-Planted"
# What Gmail sends on a bad token (getgrav/grav-plugin-email#185, ../shared/LOG-LINES.md).
GMAIL_334 = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ=="


def curl(srv: FakeSMTP, token: str, tmp_path: Path) -> tuple[int, str]:
    message = tmp_path / "message.eml"
    message.write_bytes(make_message(subject="oauth").as_bytes())
    return run_tool(
        "curl", "-sS", "-v", "--max-time", "10", "--url", f"smtp://{srv.host}:{srv.port}", "--ssl-reqd",
        "--cacert", str(srv.ca_pem), "--mail-from", USER, "--mail-rcpt", "ops@example.net",
        "--upload-file", str(message), "--user", f"{USER}:", "--oauth2-bearer", token,
        "--login-options", "AUTH=XOAUTH2",
    )


def initial_response(user: str, token: str) -> str:
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


def starttls_client(srv: FakeSMTP) -> smtplib.SMTP:
    client = smtplib.SMTP(srv.host, srv.port, timeout=5)
    client.starttls(context=trusting(srv))
    client.ehlo()
    return client


def test_curl_logs_in_with_the_token_and_sends(fake_smtp_factory: Factory, tmp_path: Path) -> None:
    srv = fake_smtp_factory(auth="required", tls="starttls", username=USER, password="pw", xoauth2_token=TOKEN)
    code, output = curl(srv, TOKEN, tmp_path)
    assert code == 0, output
    assert "AUTH CRAM-MD5 LOGIN PLAIN XOAUTH2" in output and "235 2.7.0" in output
    [message] = srv.messages
    assert (message.subject, message.auth_user) == ("oauth", USER)


def test_curl_with_a_bad_token_gets_gmails_json_challenge(fake_smtp_factory: Factory, tmp_path: Path) -> None:
    srv = fake_smtp_factory(auth="required", tls="starttls", username=USER, password="pw", xoauth2_token=TOKEN)
    code, output = curl(srv, "ya29.expired", tmp_path)
    assert code == 67, output  # curl: Login denied
    assert f"< 334 {GMAIL_334}" in output
    assert srv.messages == []


def test_gmail_style_sends_535_after_the_empty_line(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(auth="required", tls="starttls", username=USER, password="pw", xoauth2_token=TOKEN)
    with starttls_client(srv) as client:
        assert client.docmd("AUTH", "XOAUTH2 " + initial_response(USER, "wrong")) == (334, GMAIL_334.encode())
        code, text = client.docmd("")
    assert code == 535
    assert text.decode().splitlines()[0] == "5.7.8 Username and Password not accepted. Learn more at"


def test_microsoft_style_and_the_wrong_user(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(auth="required", tls="starttls", username=USER, password="pw", xoauth2_token=TOKEN,
                            xoauth2_style="microsoft")
    with starttls_client(srv) as client:
        reply = client.docmd("AUTH", "XOAUTH2 " + initial_response("bob@example.com", TOKEN))
    assert reply == (535, b"5.7.3 Authentication unsuccessful [localhost]")


def test_token_after_an_empty_challenge_and_bad_base64(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(auth="required", tls="starttls", username=USER, password="pw", xoauth2_token=TOKEN)
    with starttls_client(srv) as client:
        assert client.docmd("AUTH", "XOAUTH2 not-base64!") == (501, b"5.5.2 Can't decode base64")
        assert client.docmd("AUTH", "XOAUTH2")[0] == 334
        assert client.docmd(initial_response(USER, TOKEN))[0] == 235


def test_not_offered_without_a_token(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(auth="required", tls="starttls", username=USER, password="pw")
    with starttls_client(srv) as client:
        assert "XOAUTH2" not in client.esmtp_features["auth"]
        assert client.docmd("AUTH", "XOAUTH2 " + initial_response(USER, TOKEN))[0] == 504


def test_m365_scenario_refuses_passwords_but_takes_the_token(fake_smtp_factory: Factory, tmp_path: Path) -> None:
    srv = fake_smtp_factory(scenario="m365-basic-auth-disabled", username=USER, password="pw", xoauth2_token=TOKEN)
    refused = run_swaks(srv, "--tls", "--auth", "LOGIN", "--auth-user", USER, "--auth-password", "pw")
    assert "535 5.7.139" in refused
    code, output = curl(srv, TOKEN, tmp_path)
    assert code == 0, output
    code, output = curl(srv, "expired-token", tmp_path)  # the Microsoft way, without being told
    assert code == 67 and "< 535 5.7.3 Authentication unsuccessful [localhost]" in output, output


def test_the_token_never_reaches_logs_or_reprs(fake_smtp_factory: Factory) -> None:
    with capture_logs() as logs:
        srv = fake_smtp_factory(auth="required", tls="starttls", username=USER, password="pw", xoauth2_token=TOKEN)
        with starttls_client(srv) as client:
            client.docmd("AUTH", "XOAUTH2 " + initial_response(USER, TOKEN))
    assert any(entry.get("mechanism") == "XOAUTH2" and entry.get("success") for entry in logs)
    seen = repr(logs) + repr(srv) + repr(srv._runtime)
    assert TOKEN not in seen and initial_response(USER, TOKEN) not in seen


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"xoauth2_token": TOKEN}, "xoauth2_token needs auth='required'"),
        ({"auth": "required", "xoauth2_token": "two words"}, "visible characters without spaces"),
        ({"auth": "required", "xoauth2_token": TOKEN, "xoauth2_style": "yahoo"}, "xoauth2_style must be one of"),
    ],
)
def test_bad_options(options: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        FakeSMTP(**options)  # type: ignore[arg-type]
