"""Who can reach the fake server: loopback or not."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """Whether listening on `host` keeps the server on this machine ("" and "0.0.0.0" do not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
