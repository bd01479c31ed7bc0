"""A firewall that rejects with ICMP host/admin-prohibited (firewalld's default), for real (issue 10, item 6).

`unshare --net` gives the run a network namespace of its own (needs root, as the test machines are; it
vanishes with the process, nothing to clean up) where an iptables REJECT rule answers the connection with
the ICMP message a firewall on the way would send. The kernel then says "No route to host" (EHOSTUNREACH),
which was once reported as a missing route ("check the default route, IPv6, VPN").
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

REJECTED_ADDRESS = "127.0.0.2"  # loopback inside the namespace; the rule rejects only TCP to port 587
RUN_IN_NAMESPACE = textwrap.dedent(
    f"""
    import json
    from diag.config import SmtpConfig
    from diag.runner import run_sync
    config = SmtpConfig(host="{REJECTED_ADDRESS}", port=587, from_email="app@example.com", timeout_s=5.0)
    stage = run_sync(config).stage("connect")
    print(json.dumps({{"summary": stage.summary, "code": stage.finding.code, "cause": stage.finding.cause,
                      "fix": stage.finding.fix}}))
    """
)


@pytest.mark.parametrize("icmp", ["icmp-host-prohibited", "icmp-admin-prohibited"])
def test_a_firewall_reject_is_called_a_firewall_not_a_missing_route(icmp: str) -> None:
    rule = f"iptables -A OUTPUT -d {REJECTED_ADDRESS} -p tcp --dport 587 -j REJECT --reject-with {icmp}"
    script = f'ip link set lo up && {rule} && exec {sys.executable} -c "$0"'
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, RUN_IN_NAMESPACE],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stage = json.loads(done.stdout.strip().splitlines()[-1])
    assert stage["code"] == "connect.unreachable"
    assert "a firewall between this machine and 127.0.0.2 most likely rejects it" in stage["cause"]
    assert '(the system says "No route to host")' in stage["cause"]  # the system's own words, quoted
    assert "default route" not in stage["fix"]
    assert "firewall" in stage["fix"] and "127.0.0.2:587" in stage["fix"]
