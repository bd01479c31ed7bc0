"""EgressPolicy and IP literal parsing: the SSRF guard, in every spelling an attacker might use."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diag.policy import EgressPolicy, normalise_address, parse_ip_literal

ALWAYS_DENIED = [
    "169.254.169.254",
    "::ffff:169.254.169.254",
    "::ffff:a9fe:a9fe",
    "[::ffff:169.254.169.254]",
    "fd00:ec2::254",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
    "fe80::1",
    "fe80::1%eth0",
    "169.254.1.1",
    "2852039166",  # decimal integer
    "0xA9FEA9FE",  # hex integer
    "0251.0376.0251.0376",  # octal parts
    "169.254.43518",  # short form: the last part fills the remaining bytes
    "::ffff:0.0.0.0",
    "::ffff:255.255.255.255",
    "::ffff:224.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "0.1.2.3",  # "this network"
]

ALLOWED = ["127.0.0.1", "::1", "10.0.0.5", "192.168.1.10", "203.0.113.5", "172.16.0.1", "2001:db8::1"]


@pytest.mark.parametrize("address", ALWAYS_DENIED)
def test_always_denied_by_default(address: str) -> None:
    reason = EgressPolicy.default().vet_address(address)
    assert reason is not None
    assert "not an IP address" not in reason


@pytest.mark.parametrize("address", ALWAYS_DENIED)
def test_always_denied_even_when_allow_list_covers_everything(address: str) -> None:
    policy = EgressPolicy(allow_networks=["0.0.0.0/0", "::/0"])
    assert policy.vet_address(address) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_private_loopback_and_public_are_allowed_by_default(address: str) -> None:
    assert EgressPolicy.default().vet_address(address) is None


def test_metadata_reason_names_the_metadata_service() -> None:
    assert EgressPolicy.default().vet_address("169.254.169.254") == (
        "169.254.169.254 is link-local (cloud metadata service)"
    )


def test_reason_shows_the_spelling_and_the_address() -> None:
    reason = EgressPolicy.default().vet_address("0xA9FEA9FE")
    assert reason is not None
    assert reason.startswith("0xA9FEA9FE (169.254.169.254) is link-local")


def test_aws_ipv6_metadata_reason() -> None:
    reason = EgressPolicy.default().vet_address("fd00:ec2::254")
    assert reason is not None
    assert "AWS" in reason
    # The rest of fd00::/8 is ordinary private space.
    assert EgressPolicy.default().vet_address("fd00:ec2::253") is None


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("169.254.169.254", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        (" 10.0.0.5 ", "10.0.0.5"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("::ffff:169.254.169.254", "169.254.169.254"),
        ("::ffff:a9fe:a9fe", "169.254.169.254"),
        ("[::ffff:127.0.0.1]", "127.0.0.1"),
    ],
)
def test_parse_ip_literal_spellings(spelling: str, expected: str) -> None:
    assert parse_ip_literal(spelling) == ip_address(expected)
    assert normalise_address(spelling) == ip_address(expected)


@pytest.mark.parametrize(
    "name",
    [
        "smtp.example.com",
        "localhost",
        "example",
        "deadbeef",
        "0x1.example.com",
        "1.2.3.4 extra",  # glibc's inet_aton stops at whitespace; we must not
        "1.2.3.4\textra",
        "1.2.3.4.5",
        "256.1.1.1.1",
        "[smtp.example.com]",
        "[127.0.0.1]",  # brackets are for IPv6 only
        "",
        "..",
        "4294967296",  # one past 255.255.255.255
    ],
)
def test_parse_ip_literal_names_are_not_literals(name: str) -> None:
    assert parse_ip_literal(name) is None
    with pytest.raises(ValueError):
        normalise_address(name)


def test_vet_address_rejects_a_name() -> None:
    reason = EgressPolicy.default().vet_address("smtp.example.com")
    assert reason is not None
    assert "not an IP address" in reason


def test_allow_list_restricts_to_its_networks() -> None:
    policy = EgressPolicy(allow_networks=["10.0.0.0/8", ip_network("2001:db8::/32")])
    assert policy.vet_address("10.1.2.3") is None
    assert policy.vet_address("2001:db8::25") is None
    assert policy.vet_address("::ffff:10.1.2.3") is None  # mapped form of an allowed address
    reason = policy.vet_address("192.168.1.10")
    assert reason == "192.168.1.10 is not in the allowed networks (10.0.0.0/8, 2001:db8::/32)"
    assert policy.vet_address("127.0.0.1") is not None
    assert policy.vet_address("::1") is not None


def test_deny_list_adds_denials_in_every_spelling() -> None:
    policy = EgressPolicy(deny_networks=["127.0.0.0/8", "10.0.0.0/8"])
    spellings = ("127.0.0.1", "2130706433", "0x7f000001", "::ffff:127.0.0.1", "10.0.0.5", "64:ff9b::a00:5")
    for spelling in spellings:
        reason = policy.vet_address(spelling)
        assert reason is not None, spelling
        assert "denied network" in reason, spelling
    assert policy.vet_address("192.168.1.10") is None
    assert policy.vet_address("::1") is None


def test_deny_beats_allow() -> None:
    policy = EgressPolicy(allow_networks=["10.0.0.0/8"], deny_networks=["10.9.0.0/16"])
    assert policy.vet_address("10.1.0.1") is None
    assert policy.vet_address("10.9.0.1") is not None


def test_bad_network_in_configuration_is_an_error() -> None:
    with pytest.raises(ValueError):
        EgressPolicy(allow_networks=["not-a-network"])


def test_ports_any_by_default() -> None:
    policy = EgressPolicy.default()
    for port in (25, 465, 587, 2525, 22, 65535, 1):
        assert policy.vet_port(port) is None


def test_ports_restricted_when_given() -> None:
    policy = EgressPolicy(allowed_ports=[25, 465, 587, 2525])
    for port in (25, 465, 587, 2525):
        assert policy.vet_port(port) is None
    assert policy.vet_port(22) == "port 22 is not in the allowed ports (25, 465, 587, 2525)"
    assert policy.vet_port(6379) is not None


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_ports_out_of_range_are_denied(port: int) -> None:
    assert EgressPolicy.default().vet_port(port) is not None


def test_repr_shows_the_rules() -> None:
    text = repr(EgressPolicy(allow_networks=["10.0.0.0/8"], allowed_ports=[25]))
    assert "10.0.0.0/8" in text
    assert "[25]" in text


link_local_v4 = st.integers(
    min_value=int(IPv4Address("169.254.0.0")), max_value=int(IPv4Address("169.254.255.255"))
)


@given(link_local_v4)
def test_every_link_local_address_is_denied_in_every_spelling(value: int) -> None:
    address = IPv4Address(value)
    spellings = [
        str(address),
        str(value),
        hex(value),
        hex(value).upper().replace("X", "x"),
        ".".join(f"0{int(octet):o}" for octet in str(address).split(".")),
        f"::ffff:{address}",
        str(IPv6Address(f"::ffff:{address}")),  # the hex spelling ::ffff:a9fe:xxxx
        f"[::ffff:{address}]",
    ]
    policy = EgressPolicy(allow_networks=["0.0.0.0/0", "::/0"])
    for spelling in spellings:
        assert parse_ip_literal(spelling) == address, spelling
        assert policy.vet_address(spelling) is not None, spelling


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_integer_spellings_agree_with_inet_aton(value: int) -> None:
    """Our parse of decimal and hex integers matches the C library that a connect() would use."""
    expected = IPv4Address(socket.inet_aton(str(value)))
    assert parse_ip_literal(str(value)) == expected
    assert parse_ip_literal(hex(value)) == expected
