"""The pytest fixtures, used here through the installed pytest11 entry point."""

import smtplib
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fake_smtp import FakeSMTP
from tests.fake_smtp.clients import make_message


def test_fake_smtp_fixture_is_anonymous_on_an_ephemeral_port(fake_smtp: FakeSMTP) -> None:
    assert (fake_smtp.auth, fake_smtp.tls, fake_smtp.host) == ("none", "off", "127.0.0.1")
    assert fake_smtp.port > 0
    with smtplib.SMTP(fake_smtp.host, fake_smtp.port, timeout=5) as smtp:
        smtp.send_message(make_message(subject="fixture"))
    assert [m.subject for m in fake_smtp.messages] == ["fixture"]


def test_factory_takes_any_options(fake_smtp_factory: Callable[..., FakeSMTP]) -> None:
    first = fake_smtp_factory(auth="required", tls="both", username="u", password="p")
    second = fake_smtp_factory()
    assert first.tls_port is not None and first.ca_pem is not None and first.ca_pem.exists()
    assert second.port != first.port


def test_everything_started_is_stopped_at_teardown(tmp_path: Path) -> None:
    """Runs an inner pytest session whose test records its servers' ports, then checks they are closed."""
    ports_file = tmp_path / "ports.txt"
    (tmp_path / "test_inner.py").write_text(
        "def test_inner(fake_smtp, fake_smtp_factory):\n"
        "    other = fake_smtp_factory(tls='implicit')\n"
        f"    open({str(ports_file)!r}, 'w').write(f'{{fake_smtp.port}} {{other.port}} {{other.tls_port}}')\n"
    )
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, timeout=50, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    for port in map(int, ports_file.read_text().split()):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0  # refused: nothing listens any more
