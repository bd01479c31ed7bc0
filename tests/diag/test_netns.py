"""Why a check must run where the product runs: one configuration, two network namespaces, two answers.

The test builds two network namespaces joined by a veth pair: "laptop" (where the fake SMTP server listens,
and where a support engineer's check passes) and "pod" (the product's pod, whose egress rules, nftables
as a NetworkPolicy is, drop or reject port 587). The same `smtp-diag check` passes from the laptop, passes
from the pod before the rule, and fails from the pod after it: dropped is `connect.timeout` ("blocked on the
way", the fix naming the cluster's egress rules), rejected is `connect.refused`.

Only addresses inside the namespaces the test creates are used (10.213.0.0/30 exists nowhere else), and
the namespaces (with the veth pair in them) are deleted afterwards. It needs root, as CI has; where `ip netns`
is not permitted the test is skipped and says why. `make tools` installs ip and nft (Debian's iproute2 and
nftables).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

LAPTOP_ADDRESS = "10.213.0.1"
POD_ADDRESS = "10.213.0.2"
SMTP_PORT = 587
CHECK_TIMEOUT_S = 2
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Namespaces:
    laptop: str
    pod: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _in(namespace: str, *command: str, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True, text=True,
                          timeout=60, check=False, **options)


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces (ip netns add); CI runs as root")
    if shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.fail("ip and nft are missing: run `make tools` (Debian's iproute2 and nftables)")
    tag = secrets.token_hex(3)
    ns = Namespaces(laptop=f"diag-laptop-{tag}", pod=f"diag-pod-{tag}")
    probe = subprocess.run(["ip", "netns", "add", ns.laptop], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here: {probe.stderr.strip()}")
    try:
        _ip("netns", "add", ns.pod)
        # Interface names are at most 15 characters; the namespace deletion takes the pair with it.
        _ip("link", "add", f"vl{tag}", "type", "veth", "peer", "name", f"vp{tag}")
        _ip("link", "set", f"vl{tag}", "netns", ns.laptop)
        _ip("link", "set", f"vp{tag}", "netns", ns.pod)
        for name, link, address in ((ns.laptop, f"vl{tag}", LAPTOP_ADDRESS), (ns.pod, f"vp{tag}", POD_ADDRESS)):
            _ip("-n", name, "addr", "add", f"{address}/30", "dev", link)
            _ip("-n", name, "link", "set", link, "up")
            _ip("-n", name, "link", "set", "lo", "up")
        yield ns
    finally:
        for name in (ns.pod, ns.laptop):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


@pytest.fixture
def smtp_server(namespaces: Namespaces, tmp_path: Path) -> Iterator[str]:
    """fake-smtp inside the laptop namespace on its veth address; ready when it prints "ready"."""
    errors = tmp_path / "fake-smtp.stderr"
    with errors.open("w") as stderr, subprocess.Popen(
        ["ip", "netns", "exec", namespaces.laptop, str(BIN / "fake-smtp"), "--host", LAPTOP_ADDRESS,
         "--port", str(SMTP_PORT)],
        stdout=subprocess.PIPE, stderr=stderr, text=True,
    ) as server:
        try:
            assert server.stdout is not None
            said: list[str] = []
            for line in server.stdout:  # it prints its ports, then "ready" once it listens
                said.append(line.strip())
                if said[-1] == "ready":
                    break
            assert said[-1:] == ["ready"], (said, errors.read_text())
            yield LAPTOP_ADDRESS
        finally:
            server.terminate()
            server.wait(10)


def check_from(namespace: str, host: str) -> dict[str, Any]:
    """`smtp-diag check` run inside `namespace`, its JSON report."""
    done = _in(namespace, str(BIN / "smtp-diag"), "check", "--host", host, "--port", str(SMTP_PORT),
               "--from-email", "app@example.test", "--timeout", str(CHECK_TIMEOUT_S),
               "--json")
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def egress_rule(namespace: str, action: str) -> None:
    """The pod's egress rule, as a NetworkPolicy's CNI writes it: outgoing TCP to port 587 dropped or rejected."""
    ruleset = (
        "table inet egress {\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f"    tcp dport {SMTP_PORT} {action}\n"
        "  }\n"
        "}\n"
    )
    _in(namespace, "nft", "delete", "table", "inet", "egress")  # the previous rule, when there is one
    done = _in(namespace, "nft", "-f", "-", input=ruleset)
    assert done.returncode == 0, done.stderr


def failure(report: dict[str, Any]) -> dict[str, Any]:
    [failed] = [stage for stage in report["stages"] if stage["status"] == "failed"]
    return failed


def test_the_same_configuration_passes_from_the_laptop_and_fails_from_the_pod(
    namespaces: Namespaces, smtp_server: str
) -> None:
    from_laptop = check_from(namespaces.laptop, smtp_server)
    assert from_laptop["verdict"] == "valid", from_laptop

    from_pod = check_from(namespaces.pod, smtp_server)  # no egress rule yet: the network itself is fine
    assert from_pod["verdict"] == "valid", from_pod
    assert from_pod["origin"]["source_address"] == POD_ADDRESS  # the report says where it ran from

    egress_rule(namespaces.pod, "drop")
    dropped = check_from(namespaces.pod, smtp_server)
    assert dropped["verdict"] == "invalid"
    stage = failure(dropped)
    assert (stage["name"], stage["finding"]["code"]) == ("connect", "connect.timeout")
    assert "blocked on the way" in stage["finding"]["cause"]
    assert "egress rules" in stage["finding"]["fix"] and "NetworkPolicy" in stage["finding"]["fix"]

    egress_rule(namespaces.pod, "reject with tcp reset")
    rejected = check_from(namespaces.pod, smtp_server)
    stage = failure(rejected)
    assert (stage["name"], stage["finding"]["code"]) == ("connect", "connect.refused")
    assert f"{smtp_server} actively refused the connection on port {SMTP_PORT}" in stage["finding"]["cause"]

    assert check_from(namespaces.laptop, smtp_server)["verdict"] == "valid"  # the laptop never saw a rule
