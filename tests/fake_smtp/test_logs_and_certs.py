"""Session logs never hold the password; certificates: generated SANs, given cert+key on both listeners."""

import datetime as dt
import ipaddress
import smtplib
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import structlog
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fake_smtp import FakeSMTP
from tests.fake_smtp.clients import make_message

PASSWORD = "log-unique-Pa55word-91c2"


def test_session_events_are_logged_without_the_password() -> None:
    with structlog.testing.capture_logs() as logs, \
            FakeSMTP(auth="required", username="carol", password=PASSWORD) as srv:
        for mechanism in ("PLAIN", "LOGIN", "CRAM-MD5"):
            for password in (PASSWORD, PASSWORD + "-wrong"):
                with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
                    smtp.ehlo()
                    smtp.user, smtp.password = "carol", password
                    method = getattr(smtp, "auth_" + mechanism.lower().replace("-", "_"))
                    try:
                        smtp.auth(mechanism, method)
                        smtp.send_message(make_message())
                    except smtplib.SMTPAuthenticationError:
                        pass
    events = [entry["event"] for entry in logs]
    assert {"listening", "connect", "auth", "message accepted", "disconnect", "stopped"} <= set(events)
    auths = [(e["mechanism"], e["success"], e["user"]) for e in logs if e["event"] == "auth"]
    assert sorted(auths) == sorted((m, ok, "carol") for m in ("PLAIN", "LOGIN", "CRAM-MD5") for ok in (True, False))
    assert PASSWORD not in repr(logs)
    assert PASSWORD not in repr(srv)


def test_generated_certificate_names_the_hostname_and_loopback(tmp_path: Path) -> None:
    with FakeSMTP(tls="starttls", hostname="mail.fake.test", ca_out=tmp_path / "out" / "ca.pem") as srv:
        assert srv.ca_pem == tmp_path / "out" / "ca.pem"
        cert = x509.load_pem_x509_certificate(srv.ca_pem.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == ["mail.fake.test", "localhost"]
        assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                            ipaddress.ip_address("::1")]
        context = ssl.create_default_context(cafile=str(srv.ca_pem))
        for name in ("mail.fake.test", "localhost"):
            with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
                smtp._host = name  # the name smtplib checks the certificate against
                smtp.starttls(context=context)
    assert (tmp_path / "out" / "ca.pem").exists()  # ca_out is the caller's file: kept after stop


def test_given_cert_and_key_serve_both_listeners(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("smtp.example.test")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with FakeSMTP(tls="both", cert=tmp_path / "cert.pem", key=tmp_path / "key.pem") as srv:
        assert srv.ca_pem == tmp_path / "cert.pem"
        assert srv.tls_port is not None
        with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
            smtp._host = "smtp.example.test"
            smtp.starttls(context=context)
            smtp.send_message(make_message())
        raw = socket.create_connection((srv.host, srv.tls_port), timeout=5)
        with context.wrap_socket(raw, server_hostname="smtp.example.test") as tls_sock:
            assert tls_sock.recv(1024).startswith(b"220 ")
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            smtplib.SMTP_SSL(srv.host, srv.tls_port, timeout=5, context=context)  # wrong name: 127.0.0.1
        assert [m.tls for m in srv.messages] == [True]


def test_given_expired_certificate_is_served_as_is(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(long_ago).not_valid_after(long_ago + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with FakeSMTP(tls="implicit", cert=tmp_path / "cert.pem", key=tmp_path / "key.pem") as srv:
        assert srv.tls_port is not None
        context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        with pytest.raises(ssl.SSLCertVerificationError) as failed:
            smtplib.SMTP_SSL("localhost", srv.tls_port, timeout=5, context=context)
        assert failed.value.verify_code == 10  # certificate has expired


def test_unusable_cert_files_fail_at_start(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    with pytest.raises(ssl.SSLError):
        FakeSMTP(tls="starttls", cert=tmp_path / "cert.pem", key=tmp_path / "key.pem").start()


def test_the_server_says_nothing_unless_logging_is_configured() -> None:
    """A test suite or program that starts a FakeSMTP without configuring logging gets no server lines on its
    stdout (structlog's defaults printed every connect, message and disconnect there)."""
    code = (
        "import smtplib\n"
        "from fake_smtp import FakeSMTP\n"
        "with FakeSMTP() as srv:\n"
        "    with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:\n"
        "        smtp.sendmail('a@example.test', ['b@example.test'], b'Subject: x\\r\\n\\r\\nbody\\r\\n')\n"
        "    assert srv.mailbox.wait_for(1, timeout=5)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "" and done.stderr == ""
