"""Named scenarios: each one seen by swaks (a client that is not ours), and by smtp-diag (the doc's table)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from fake_smtp import FakeSMTP
from fake_smtp.policies import Envelope, Greylist, RateLimit
from fake_smtp.scenarios import SCENARIOS, resolve
from tests.fake_smtp import scenario_table
from tests.fake_smtp.real_clients import FROM, TO, swaks, swaks_login

USER, APP_PASSWORD = "alice@example.com", "app-password-1"
Factory = Callable[..., FakeSMTP]


def lines_of(reply: str, **values: str) -> list[str]:
    for name, value in values.items():
        reply = reply.replace("{" + name + "}", value)
    return reply.split("\r\n")


def assert_replied(output: str, reply: str, **values: str) -> None:
    for line in lines_of(reply, **values):
        assert line in output, (line, output)


async def test_the_doc_table_is_what_smtp_diag_gives_today() -> None:
    """The scenario -> finding table in docs/fake-smtp.md is produced, not written: regenerate it with
    `.venv/bin/python -m tests.fake_smtp.scenario_table` when this fails."""
    assert await scenario_table.produce() == scenario_table.documented()


def test_every_scenario_is_in_the_doc_table_and_the_listing() -> None:
    table = scenario_table.documented()
    listing = subprocess.run([sys.executable, "-m", "fake_smtp.cli", "--list-scenarios"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    for name in SCENARIOS:
        assert f"| `{name}" in table, name
        assert f"\n{name}: " in f"\n{listing}", name


def test_gmail_app_password_refuses_the_account_password_and_takes_the_app_password(factory: Factory) -> None:
    srv = factory(scenario="gmail-app-password", username=USER, password=APP_PASSWORD)
    refused = swaks(srv, "--tls", *swaks_login(USER, "account-password"))
    assert_replied(refused, SCENARIOS["gmail-app-password"].replies[0])
    accepted = swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD))
    assert "235 2.7.0 Authentication successful" in accepted
    assert len(srv.messages) == 1


@pytest.mark.parametrize("name", ["gmail-bad-password"])
def test_gmail_bad_password_multi_line(factory: Factory, name: str) -> None:
    srv = factory(scenario=name, username=USER, password=APP_PASSWORD)
    assert_replied(swaks(srv, "--tls", *swaks_login(USER, "wrong")), SCENARIOS[name].replies[0])


@pytest.mark.parametrize("name", ["m365-basic-auth-disabled", "m365-basic-auth-retired"])
@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN", "CRAM-MD5"])
def test_m365_refuses_password_logins_even_right_ones(factory: Factory, name: str, mechanism: str) -> None:
    srv = factory(scenario=name, username=USER, password=APP_PASSWORD)
    output = swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD, mechanism))
    assert_replied(output, SCENARIOS[name].replies[0])
    assert srv.messages == []


def test_m365_send_as_denied_after_data(factory: Factory) -> None:
    srv = factory(scenario="m365-send-as-denied", username=USER, password=APP_PASSWORD)
    output = swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD))
    assert "<~  250 OK" in output  # MAIL and RCPT passed
    assert_replied(output, SCENARIOS["m365-send-as-denied"].replies[0], login=USER, mail_from=FROM)
    assert srv.messages == []
    own = swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD), sender=USER)
    assert "Ok: queued as" in own and len(srv.messages) == 1


def test_ses_unverified_sender_after_data_and_a_verified_one_passes(factory: Factory) -> None:
    srv = factory(scenario="ses-unverified-sender:example.org", username=USER, password=APP_PASSWORD)
    output = swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD))
    assert_replied(output, SCENARIOS["ses-unverified-sender"].replies[0], mail_from=FROM)
    verified = swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD), sender="noreply@example.org")
    assert "Ok: queued as" in verified


def test_starttls_broken(factory: Factory) -> None:
    srv = factory(scenario="starttls-broken")
    output = swaks(srv, "--tls")
    assert "250-STARTTLS" in output
    assert_replied(output, SCENARIOS["starttls-broken"].replies[0])


def test_auth_after_starttls_only(factory: Factory) -> None:
    srv = factory(scenario="auth-after-starttls-only", username=USER, password=APP_PASSWORD)
    plain = swaks(srv, "--quit-after", "RCPT")
    assert "AUTH" not in plain.split("STARTTLS")[0].split("EHLO")[-1]  # not advertised before TLS
    assert "530 5.7.0 Must issue a STARTTLS command first" in plain
    after_tls = swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD))
    assert "250-AUTH" in after_tls and "Ok: queued as" in after_tls


def test_implicit_tls_only_greets_only_after_a_tls_handshake(factory: Factory) -> None:
    srv = factory(scenario="implicit-tls-only")
    assert srv.port == srv.tls_port
    assert "220 " not in swaks(srv, "--timeout", "1", "--quit-after", "BANNER")
    assert "220 localhost ESMTP" in swaks(srv, "--tls-on-connect")


def test_slow_greeting_times_out_a_short_timeout(factory: Factory) -> None:
    srv = factory(scenario="slow-greeting:3")
    output = swaks(srv, "--timeout", "1", "--quit-after", "BANNER")
    assert "220 " not in output and "Timeout" in output


def test_greylisting_defers_the_first_try_and_accepts_a_late_retry(factory: Factory) -> None:
    """The retry waits out the scenario's own greylisting period (1 s): the behaviour under test is a
    delay, so the test has to let it pass."""
    srv = factory(scenario="greylisting:1")
    reply = SCENARIOS["greylisting"].replies[0]
    assert_replied(swaks(srv), reply, rcpt=TO, rcpt_domain="example.net")
    first_try = time.monotonic()  # the server noted the triplet before swaks returned
    assert_replied(swaks(srv), reply, rcpt=TO, rcpt_domain="example.net")  # too early
    time.sleep(max(0.0, 1.0 - (time.monotonic() - first_try)))
    assert "Ok: queued as" in swaks(srv)
    assert_replied(swaks(srv, to="other@example.net"), reply, rcpt="other@example.net",
                   rcpt_domain="example.net")  # a new triplet starts again


def test_rate_limited_after_n_messages_closes_with_421(factory: Factory) -> None:
    srv = factory(scenario="rate-limited:2/60")
    assert "Ok: queued as" in swaks(srv)
    assert "Ok: queued as" in swaks(srv)
    third = swaks(srv)
    assert_replied(third, SCENARIOS["rate-limited"].replies[0])
    assert len(srv.messages) == 2


def test_relay_denied_for_foreign_recipients_only(factory: Factory) -> None:
    srv = factory(scenario="relay-denied:example.org")
    assert_replied(swaks(srv), SCENARIOS["relay-denied"].replies[0], rcpt=TO)
    assert "Ok: queued as" in swaks(srv, to="ops@example.org")


def test_sender_not_owned(factory: Factory) -> None:
    srv = factory(scenario="sender-not-owned", username=USER, password=APP_PASSWORD)
    output = swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD))
    assert_replied(output, SCENARIOS["sender-not-owned"].replies[0], mail_from=FROM, login=USER)
    assert "Ok: queued as" in swaks(srv, "--tls", *swaks_login(USER, APP_PASSWORD), sender=USER)


# -- the pieces, without a network ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("nope", "unknown scenario 'nope'"),
        ("gmail-bad-password:1", "takes no argument"),
        ("slow-greeting:soon", "expected seconds"),
        ("slow-greeting:-1", "seconds must be a finite number >= 0"),
        ("greylisting:nan", "seconds must be a finite number >= 0"),
        ("rate-limited:x", "expected N or N/SECONDS"),
        ("rate-limited:3/0", "the window must be > 0"),
        ("relay-denied:,", "expected comma-separated names"),
    ],
)
def test_bad_scenario_text_names_the_problem(spec: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        resolve(spec)
    with pytest.raises(ValueError, match=reason):
        FakeSMTP(scenario=spec)


def test_cli_refuses_an_unknown_scenario_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "fake_smtp.cli", "--scenario", "nope"], capture_output=True,
                          text=True, timeout=20, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "unknown scenario 'nope'" in done.stderr


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_greylist_remembers_triplets_by_client_sender_and_recipient() -> None:
    clock = Clock()
    grey = Greylist("451 {rcpt}", seconds=300, clock=clock)
    first = Envelope("192.0.2.1", None, "a@x.test", rcpt="b@y.test")
    assert grey.on_rcpt(first) is not None
    clock.now = 299
    assert grey.on_rcpt(first) is not None
    clock.now = 300
    assert grey.on_rcpt(first) is None
    assert grey.on_rcpt(Envelope("192.0.2.2", None, "a@x.test", rcpt="b@y.test")) is not None


def test_rate_limit_opens_again_as_messages_leave_the_window() -> None:
    clock = Clock()
    limit = RateLimit("421 slow down", limit=2, window=60, clock=clock)
    envelope = Envelope("192.0.2.1", None, "a@x.test")
    for _ in range(2):
        assert limit.on_mail(envelope) is None
        limit.on_accepted(envelope)
    verdict = limit.on_mail(envelope)
    assert verdict is not None and verdict.close
    clock.now = 60
    assert limit.on_mail(envelope) is None


@pytest.fixture
def factory(fake_smtp_factory: Factory) -> Factory:
    return fake_smtp_factory
