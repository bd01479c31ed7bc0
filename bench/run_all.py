"""`make bench`: every benchmark in turn, each in its own process, all figures on stdout.

A missing script (bench/fake_server.py is written separately) is reported and skipped; a failing one
makes the exit status 1 once all have run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (script, extra environment): load.py runs twice, plaintext and STARTTLS + AUTH.
SCRIPTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("engine.py", {}),
    ("fake_server.py", {}),
    ("load.py", {}),
    ("load.py", {"BENCH_LOAD_TLS": "1"}),
    ("hostile_timing.py", {}),
    ("replicas.py", {}),
    ("rtt.py", {}),
    ("run_cap.py", {}),
)
LIMIT_S = 600  # per script: a hung benchmark must not hang `make bench`


def main() -> int:
    failed: list[str] = []
    for name, extra in SCRIPTS:
        script = HERE / name
        print(f"=== bench/{name} {' '.join(f'{k}={v}' for k, v in extra.items())}".rstrip() + " ===", flush=True)
        if not script.exists():
            print("  (not present: skipped)", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, str(script)], env={**os.environ, **extra}, timeout=LIMIT_S, check=False
            )
        except subprocess.TimeoutExpired:
            print(f"  TIMED OUT after {LIMIT_S} s", flush=True)
            failed.append(name)
            continue
        print(f"  ({time.perf_counter() - t0:.1f} s, exit {done.returncode})", flush=True)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
