"""Certificate faults, seen by `openssl s_client` (not ours) over STARTTLS and implicit TLS, and by Python's
ssl module: each fails verification with its own OpenSSL verify code while the client trusts `ca_pem`."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509

from fake_smtp import FakeSMTP
from fake_smtp.cert_faults import CERT_FAULTS, parse_cert_fault
from tests.fake_smtp.real_clients import run_tool

Factory = Callable[..., FakeSMTP]
EXPECTED_CODE = {
    "expired": 10, "not-yet-valid": 9, "wrong-host": 62, "self-signed": 18, "untrusted-ca": 20,
    "missing-intermediate": 20, "expiring-soon:5": 0,
}


def s_client(srv: FakeSMTP, *, starttls: bool) -> tuple[int, str]:
    port = srv.port if starttls else srv.tls_port
    assert port is not None and srv.ca_pem is not None
    _, output = run_tool(
        "openssl", "s_client", "-connect", f"{srv.host}:{port}", *(["-starttls", "smtp"] if starttls else []),
        "-CAfile", str(srv.ca_pem), "-verify_hostname", "localhost", "-servername", "localhost",
    )
    match = re.search(r"Verify return code: (\d+)", output)
    assert match is not None, output
    return int(match.group(1)), output


@pytest.mark.parametrize("fault", list(EXPECTED_CODE))
def test_openssl_sees_the_fault_on_both_listeners(fake_smtp_factory: Factory, fault: str) -> None:
    srv = fake_smtp_factory(tls="both", cert_fault=fault)
    for starttls in (True, False):
        code, output = s_client(srv, starttls=starttls)
        # s_client, given only the leaf, says 21 "unable to verify the first certificate" where Python's
        # handshake says 20; both mean the issuer is not trusted.
        expected = 21 if EXPECTED_CODE[fault] == 20 else EXPECTED_CODE[fault]
        assert code == expected, output


@pytest.mark.parametrize("fault", list(EXPECTED_CODE))
def test_python_ssl_verify_code(fake_smtp_factory: Factory, fault: str) -> None:
    srv = fake_smtp_factory(tls="implicit-only", cert_fault=fault)
    context = ssl.create_default_context(cafile=str(srv.ca_pem))
    with socket.create_connection((srv.host, srv.port), timeout=5) as raw:
        if EXPECTED_CODE[fault] == 0:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
                days_left = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
                assert days_left >= 5
                assert 4 <= (leaf.not_valid_after_utc.timestamp() - _now()) / 86400 <= 6
            return
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            context.wrap_socket(raw, server_hostname="localhost")
    assert caught.value.verify_code == EXPECTED_CODE[fault]


def _now() -> float:
    import time

    return time.time()


def test_every_fault_is_covered() -> None:
    assert {parse_cert_fault(f)[0] for f in EXPECTED_CODE} == set(CERT_FAULTS)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"cert_fault": "rusty"}, "unknown certificate fault 'rusty'"),
        ({"cert_fault": "expired:3"}, "takes no argument"),
        ({"cert_fault": "expiring-soon"}, "expiring-soon needs whole DAYS"),
        ({"cert_fault": "expiring-soon:-2"}, "expiring-soon needs whole DAYS"),
        ({"cert_fault": "expired"}, "cert_fault needs TLS"),
        ({"cert_fault": "expired", "tls": "starttls", "cert": "c.pem", "key": "k.pem"}, "leave cert and key out"),
    ],
)
def test_bad_cert_fault_options(options: dict[str, str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        FakeSMTP(**options)  # type: ignore[arg-type]


def test_cli_writes_the_trust_pem_where_asked(tmp_path: Path) -> None:
    """Starts the CLI on free ports with --ca-out and reads the PEM it announces."""
    ca_out = tmp_path / "trust.pem"
    process = subprocess.Popen(
        [sys.executable, "-m", "fake_smtp.cli", "--tls", "starttls", "--cert-fault", "untrusted-ca", "--port", "0",
         "--ca-out", str(ca_out)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        assert lines[1] == f"ca-pem {ca_out}" and lines[2] == "ready", lines
        trusted = x509.load_pem_x509_certificate(ca_out.read_bytes())
        assert "the client trusts" in trusted.subject.rfc4514_string()
    finally:
        process.terminate()
        process.communicate(timeout=10)
