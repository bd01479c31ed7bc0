"""Per-address rules: parsed from text, applied at MAIL FROM / RCPT TO, seen by swaks and smtplib."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Callable

import pytest

from fake_smtp import FakeSMTP
from fake_smtp.address_rules import AddressRule, parse_address_rule
from tests.fake_smtp.clients import make_message
from tests.fake_smtp.real_clients import swaks

Factory = Callable[..., FakeSMTP]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rcpt:*@bounce.test=550 5.1.1",
         AddressRule("rcpt", "*@bounce.test", 550, "5.1.1 <{rcpt}>: Recipient address rejected")),
        ("from:spoof@*=553", AddressRule("from", "spoof@*", 553, "5.7.1 <{mail_from}>: Sender address rejected")),
        ("rcpt:full@example.test=452 4.2.2 Mailbox full",
         AddressRule("rcpt", "full@example.test", 452, "4.2.2 Mailbox full")),
        ("rcpt:a@b.test=550 No such user here", AddressRule("rcpt", "a@b.test", 550, "5.1.1 No such user here")),
    ],
)
def test_parse(text: str, expected: AddressRule) -> None:
    assert parse_address_rule(text) == expected
    assert parse_address_rule(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("to:*@x=550", "expected from:GLOB=CODE"),
        ("rcpt:=550", "expected from:GLOB=CODE"),
        ("rcpt:*@x", "expected from:GLOB=CODE"),
        ("rcpt:*@x=250", "reply code must be 400-599"),
        ("rcpt:*@x=55O", "reply code must be 400-599"),
        ("rcpt:*@x=550 4.1.1", "does not match the class"),
        ("rcpt:*@x=550 a\nb", "CR, LF or NUL"),
        ("rcpt:" + "x" * 600 + "=550", "longer than 512"),
    ],
)
def test_bad_rules_name_the_problem(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_address_rule(text)
    with pytest.raises(ValueError, match=reason):
        FakeSMTP(address_rules=[text])


def test_rules_by_recipient_and_sender_seen_by_swaks(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(address_rules=["rcpt:*@BOUNCE.test=550 5.1.1", "from:spoof@*=553"])
    bounced = swaks(srv, to="someone@bounce.test")
    assert "550 5.1.1 <someone@bounce.test>: Recipient address rejected" in bounced
    spoofed = swaks(srv, sender="Spoof@example.com")
    assert "553 5.7.1 <Spoof@example.com>: Sender address rejected" in spoofed
    assert "Ok: queued as" in swaks(srv)
    assert len(srv.messages) == 1


def test_only_the_matching_recipient_is_refused_and_rules_change_while_running(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(address_rules=["rcpt:gone@*=550 5.1.1 User unknown"])
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
        refused = smtp.send_message(make_message(), to_addrs=["gone@example.test", "here@example.test"])
    assert refused == {"gone@example.test": (550, b"5.1.1 User unknown")}
    assert srv.messages[0].rcpt_tos == ["here@example.test"]
    srv.set_address_rules(["rcpt:here@*=421"])
    with socket.create_connection((srv.host, srv.port), timeout=5) as raw:
        replies = raw.makefile("rb")
        replies.readline()
        raw.sendall(b"HELO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<here@example.test>\r\n")
        assert [replies.readline()[:3] for _ in range(3)] == [b"250", b"250", b"421"]
        assert replies.readline() == b""  # the server closed the connection after its 421
    assert [str(rule) for rule in srv.address_rules] == ["rcpt:here@*=421 4.1.1 <{rcpt}>: Recipient address rejected"]


def test_a_rule_beats_a_scenario(fake_smtp_factory: Factory) -> None:
    srv = fake_smtp_factory(scenario="relay-denied", address_rules=["rcpt:*@example.net=450 4.2.1 Try later"])
    assert "450 4.2.1 Try later" in swaks(srv)
