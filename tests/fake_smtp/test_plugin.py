"""The pytest fixtures, used here through the installed pytest11 entry point."""

import re
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


def run_inner(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_inner.py").write_text(source)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, timeout=50, cwd=tmp_path)


def test_marker_and_indirect_parameters(tmp_path: Path) -> None:
    """An inner session: the marker's keywords, a scenario name and an options dict all reach FakeSMTP."""
    done = run_inner(tmp_path, (
        "import pytest\n"
        "from fake_smtp.pytest_plugin import cert_fault_params, scenario_params\n"
        "@pytest.mark.fake_smtp(scenario='relay-denied', http_port=0)\n"
        "def test_marker(fake_smtp):\n"
        "    assert fake_smtp.scenario == 'relay-denied' and fake_smtp.http_port\n"
        "@pytest.mark.parametrize('fake_smtp', scenario_params(), indirect=True)\n"
        "def test_scenarios(fake_smtp, request):\n"
        "    assert fake_smtp.scenario == request.node.callspec.id\n"
        "@pytest.mark.parametrize('fake_smtp', cert_fault_params(), indirect=True)\n"
        "def test_cert_faults(fake_smtp):\n"
        "    assert fake_smtp.cert_fault and fake_smtp.tls == 'starttls' and fake_smtp.ca_pem.exists()\n"
        "@pytest.mark.fake_smtp('positional')\n"
        "def test_positional_is_refused(fake_smtp):\n"
        "    pass\n"
    ))
    assert "22 passed, 1 error" in done.stdout, done.stdout + done.stderr
    assert "takes keywords only" in done.stdout


def test_the_docs_examples_run(tmp_path: Path) -> None:
    """Every python block of docs/fake-smtp.md's copy-paste section runs as written, in an inner session."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "fake-smtp.md").read_text()
    section = doc.split("<!-- scenario-examples:start -->")[1].split("<!-- scenario-examples:end -->")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    from fake_smtp.scenarios import SCENARIOS

    for name in SCENARIOS:
        assert any(f'"{name}' in block for block in blocks), f"no example for {name}"
    for index, block in enumerate(blocks):
        (tmp_path / f"test_example_{index}.py").write_text(block)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, timeout=55, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b2[0-9] passed\b", done.stdout), done.stdout
