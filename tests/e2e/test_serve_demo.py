"""What `make run` starts, as a whole process: `smtp-diag serve --demo` prints its URL, serves the page with
the demo presets, runs every preset against its bundled fake server with the verdict the preset promises,
and stops cleanly on Ctrl-C."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

READY = re.compile(r"serving on (http://\S+)")
# What each demo preset is for (its description on the page says so): two show a failure, the rest pass.
EXPECTED_VERDICT = {"wrong-password": "invalid", "starttls-untrusted": "invalid"}
PRESET_DATA = re.compile(r'<script type="application/json" id="presets-data">(.*?)</script>', re.S)


class Service:
    def __init__(self, tmp_path: Path) -> None:
        env = {**os.environ, "DIAG_DB_PATH": str(tmp_path / "reports.sqlite3")}
        env.pop("DIAG_API_TOKEN", None)
        self.process = subprocess.Popen(
            # Port 0: the service binds any free port and prints the real URL (no race with other workers).
            [sys.executable, "-m", "diag", "serve", "--demo", "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.stderr_lines: list[str] = []
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        """Read stderr until the URL line (the process writes it once listening); keep draining after."""
        found = threading.Event()
        url: list[str] = []

        def drain() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.stderr_lines.append(line)
                match = READY.search(line)
                if match and not url:
                    url.append(match.group(1).rstrip("/"))
                    found.set()
            found.set()  # the process ended without the line

        self.drainer = threading.Thread(target=drain, daemon=True)
        self.drainer.start()
        assert found.wait(timeout=30), "no 'serving on' line within 30 s"
        assert url, "".join(self.stderr_lines)
        return url[0]

    def stop(self, signum: int = signal.SIGINT) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=20)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        if svc.process.poll() is None:
            svc.process.kill()
        svc.process.wait(timeout=10)
        svc.drainer.join(timeout=10)  # reads to EOF, which the process's exit brings
        assert svc.process.stderr is not None
        svc.process.stderr.close()


def test_serve_demo_runs_every_preset_and_stops_cleanly(service: Service) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        page = client.get("/")
        assert page.status_code == 200
        match = PRESET_DATA.search(page.text)
        assert match is not None
        presets = json.loads(html.unescape(match.group(1)))
        assert {p["key"] for p in presets} >= {"anonymous", "authenticated", "implicit", *EXPECTED_VERDICT}
        for preset in presets:
            response = client.post("/api/diagnostics", json=preset["config"])
            assert response.status_code == 201, (preset["key"], response.text)
            report = response.json()
            expected = EXPECTED_VERDICT.get(preset["key"], "valid")
            assert report["verdict"] == expected, (preset["key"], [(s["name"], s["summary"]) for s in report["stages"]])
            assert client.get(response.headers["location"]).json()["id"] == report["id"]
    assert service.stop() == 0
    log = "".join(service.stderr_lines)
    assert "Traceback" not in log
    assert "demo SMTP servers on 127.0.0.1 ports" in log
    for preset in presets:  # which demo server is on which port
        assert f"{preset['config']['port']:>5}  {preset['label']}: " in log


def test_serve_exits_0_on_sigterm(service: Service) -> None:
    """As documented: SIGTERM (what `docker stop` and Kubernetes send) stops the server cleanly, exit 0."""
    with httpx.Client(base_url=service.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
    assert service.stop(signal.SIGTERM) == 0
    log = "".join(service.stderr_lines)
    assert "Traceback" not in log
