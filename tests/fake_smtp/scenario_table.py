"""The scenario -> finding table of docs/fake-smtp.md, produced by running smtp-diag against each scenario.

`test_scenario_findings.py` checks that the doc holds exactly what this produces; after a change, rewrite
the doc's table with:

    .venv/bin/python -m tests.fake_smtp.scenario_table

Each case is a scenario (or certificate fault) and the configuration a user would test it with; the row
is the first stage that did not pass and its finding code, as `diag.runner.run` reports them today.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diag.config import Secret, SmtpConfig, TlsMode
from diag.report import Report, Status
from diag.runner import run
from fake_smtp import FakeSMTP

DOC = Path(__file__).resolve().parents[2] / "docs" / "fake-smtp.md"
START, END = "<!-- scenario-findings:start -->", "<!-- scenario-findings:end -->"
USER, PASSWORD = "alice@example.com", "app-password-1"
FROM, RECIPIENT = "alerts@example.com", "ops@example.net"
TIMEOUT_S = 0.8  # slow-greeting waits longer than this


@dataclass(frozen=True)
class Case:
    label: str  # the first column: how you start it
    server: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    given: str = ""  # what smtp-diag was given, in words
    prime: Callable[[FakeSMTP], None] | None = None  # something a client did before smtp-diag ran


def _send_one(srv: FakeSMTP) -> None:
    """One message through, so a rate limit of one per window is used up."""
    assert srv.ca_pem is None
    with smtplib.SMTP(srv.host, srv.port, timeout=5) as smtp:
        smtp.sendmail(FROM, [RECIPIENT], b"Subject: first\r\n\r\nbody\r\n")


LOGIN = {"username": USER, "password": PASSWORD}
SEND = {"recipient": RECIPIENT, "send_test_message": True}

CASES: tuple[Case, ...] = (
    Case("gmail-app-password", {"scenario": "gmail-app-password"}, {**LOGIN, "password": "account-password"},
         "login with the account password"),
    Case("gmail-bad-password", {"scenario": "gmail-bad-password"}, {**LOGIN, "password": "wrong"},
         "a wrong password"),
    Case("m365-basic-auth-disabled", {"scenario": "m365-basic-auth-disabled"}, LOGIN, "the right password"),
    Case("m365-basic-auth-retired", {"scenario": "m365-basic-auth-retired"}, LOGIN, "the right password"),
    Case("m365-send-as-denied", {"scenario": "m365-send-as-denied"}, {**LOGIN, **SEND},
         f"From {FROM}, login {USER}, a test message"),
    Case("ses-unverified-sender", {"scenario": "ses-unverified-sender"}, {**LOGIN, **SEND},
         f"From {FROM} (not verified), a test message"),
    Case("starttls-broken", {"scenario": "starttls-broken"}, {}, "anonymous, STARTTLS"),
    Case("auth-after-starttls-only", {"scenario": "auth-after-starttls-only"},
         {**LOGIN, "tls_mode": TlsMode.NONE}, "TLS mode none, with a login"),
    Case("implicit-tls-only", {"scenario": "implicit-tls-only"}, {"tls_mode": TlsMode.STARTTLS},
         "TLS mode starttls"),
    Case("slow-greeting:2", {"scenario": "slow-greeting:2"}, {}, f"timeout {TIMEOUT_S:g} s"),
    Case("greylisting:60", {"scenario": "greylisting:60"}, {"recipient": RECIPIENT}, "a test recipient"),
    Case("rate-limited:1/60", {"scenario": "rate-limited:1/60"}, {}, "one message already sent this minute",
         prime=_send_one),
    Case("relay-denied", {"scenario": "relay-denied"}, {"recipient": RECIPIENT}, "anonymous, a foreign recipient"),
    Case("sender-not-owned", {"scenario": "sender-not-owned"}, LOGIN, f"From {FROM}, login {USER}"),
    *(
        Case(f"--cert-fault {fault}", {"tls": "starttls", "cert_fault": fault}, {}, "STARTTLS, trusting ca-pem")
        for fault in ("expired", "not-yet-valid", "wrong-host", "self-signed", "untrusted-ca",
                      "missing-intermediate", "expiring-soon:7")
    ),
)


def config_for(srv: FakeSMTP, case: Case) -> SmtpConfig:
    options = dict(case.config)
    password = options.pop("password", None)
    return SmtpConfig(
        host=srv.host, port=srv.port, from_email=FROM, password=None if password is None else Secret(password),
        ca_bundle=None if srv.ca_pem is None else srv.ca_pem.read_text(), timeout_s=TIMEOUT_S,
        **{"tls_mode": TlsMode.AUTO, **options},
    )


def first_not_passed(report: Report) -> tuple[str, str]:
    """(stage, finding code) of the stage that failed; when none did, of the first warning after config
    (config warns about every anonymous setup, which says nothing about the scenario)."""
    for wanted in (Status.FAILED, Status.WARNING):
        for result in report.stages:
            if result.name != "config" and result.status is wanted and result.finding is not None:
                return result.name, result.finding.code
    return "-", "(valid)"


async def row_for(case: Case) -> tuple[str, str, str, str]:
    options = {"username": USER, "password": PASSWORD, **case.server}
    with FakeSMTP(**options) as srv:
        if case.prime is not None:
            await asyncio.to_thread(case.prime, srv)
        report = await run(config_for(srv, case))
    stage, code = first_not_passed(report)
    return case.label, case.given, stage, code


async def produce() -> str:
    rows = await asyncio.gather(*(row_for(case) for case in CASES))
    lines = ["| scenario | smtp-diag was given | stage | finding |", "|---|---|---|---|"]
    lines += [f"| `{label}` | {given} | {stage} | `{code}` |" for label, given, stage, code in rows]
    return "\n".join(lines)


def documented() -> str:
    text = DOC.read_text()
    match = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), text, re.S)
    return "" if match is None else match.group(1).rstrip("\n")


def rewrite(table: str) -> None:
    text = DOC.read_text()
    pattern = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{DOC}: no {START} ... {END} block")
    DOC.write_text(pattern.sub(lambda _: f"{START}\n{table}\n{END}", text))


if __name__ == "__main__":
    ssl.create_default_context()  # fail early if the ssl module is broken
    produced = asyncio.run(produce())
    rewrite(produced)
    sys.stdout.write(produced + "\n")
