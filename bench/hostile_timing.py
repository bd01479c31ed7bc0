"""How long a silent or slow peer holds a diagnosis, as a ratio of the configured timeout.

A support engineer sets timeout_s and expects an answer in a predictable multiple of it. For each
behaviour of the scripted hostile peer (tests/peer.py) and each timeout (BENCH_HOSTILE_TIMEOUTS,
default "1,2"), this prints the failure time, the ratio failure time / timeout, and the finding. The
expected multiples come from the engine's design: a peer that never greets costs one timeout (the TLS
probe and the HTTP sniff ask on their own connections while the greeting is awaited, all by one
deadline), an HTTP server only the grace before they ask, a silent EHLO one timeout; the run's hard
budget is timeout * 8 + 5 s. Target (issue 13): failure time / timeout <= 1.1.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

# The peer lives with the tests (one implementation of hostile behaviour); bench/ runs as a script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diag.config import SmtpConfig, TlsMode
from diag.logging import configure_logging
from diag.runner import budget_for, run
from tests import peer as hostile

TIMEOUTS = [float(t) for t in os.environ.get("BENCH_HOSTILE_TIMEOUTS", "1,2").split(",")]
CASES: list[tuple[str, hostile.Behaviour, TlsMode]] = [
    ("never greets", hostile.never_greets, TlsMode.AUTO),
    ("drips 1 byte/s", hostile.drips, TlsMode.AUTO),
    ("HTTP server", hostile.http_server, TlsMode.AUTO),
    ("silent after EHLO", hostile.silent_after_greeting, TlsMode.AUTO),
]


async def measure(behaviour: hostile.Behaviour, tls_mode: TlsMode, timeout_s: float) -> tuple[float, str]:
    async with hostile.Peer(behaviour) as peer:
        config = SmtpConfig(host="127.0.0.1", port=peer.port, from_email="bench@example.com",
                            timeout_s=timeout_s, tls_mode=tls_mode)
        t0 = time.perf_counter()
        report = await run(config)
        elapsed = time.perf_counter() - t0
    failure = report.first_failure
    code = failure.finding.code if failure and failure.finding else "no failure"
    return elapsed, code


def main() -> int:
    configure_logging(json=True, level="WARNING", stream=open(os.devnull, "w"))  # noqa: SIM115 - process lifetime
    print("hostile peers: failure time as a multiple of timeout_s (budget = timeout * 8 + 5 s)")
    for name, behaviour, tls_mode in CASES:
        for timeout_s in TIMEOUTS:
            elapsed, code = asyncio.run(measure(behaviour, tls_mode, timeout_s))
            budget = budget_for(SmtpConfig(host="x", port=25, from_email="a@b.c", timeout_s=timeout_s))
            print(f"  {name:<18} timeout {timeout_s:4.1f} s   failed after {elapsed:6.2f} s   "
                  f"ratio {elapsed / timeout_s:5.2f}   (budget {budget:4.1f} s)   {code}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
