"""Clients that are not ours, run as processes against a FakeSMTP: swaks, curl and openssl s_client.

Each returns what the tool printed (stdout and stderr together) so tests can look for the server's reply
lines verbatim. Every run has a timeout; the tools are installed by `make tools` (swaks) or come with the
base image (curl, openssl).
"""

from __future__ import annotations

import subprocess

from fake_smtp import FakeSMTP

FROM = "alerts@example.com"
TO = "ops@example.net"
PROCESS_TIMEOUT_S = 20


def swaks(srv: FakeSMTP, *args: str, port: int | None = None, sender: str = FROM, to: str = TO) -> str:
    """swaks against `srv` (its plain/STARTTLS port unless told), a 5 s timeout per step."""
    command = [
        "swaks", "--server", f"{srv.host}:{port or srv.port}", "--from", sender, "--to", to,
        "--timeout", "5", "--helo", "client.example.test", *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=PROCESS_TIMEOUT_S, check=False)
    return done.stdout + done.stderr


def swaks_login(user: str, password: str, mechanism: str = "LOGIN") -> list[str]:
    return ["--auth", mechanism, "--auth-user", user, "--auth-password", password]


def run_tool(*command: str, stdin: str = "") -> tuple[int, str]:
    done = subprocess.run(list(command), input=stdin, capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_S, check=False)
    return done.returncode, done.stdout + done.stderr
