"""Who can reach the fake server: loopback or not, and the loud warning when other machines can.

The fake server accepts any mail and (with the inbox API) hands it to anyone who asks: fine on loopback,
a leak on a shared network. The warning says what is open and how to close it.
"""

from __future__ import annotations

import ipaddress

BAR = "!" * 78


def is_loopback_host(host: str) -> bool:
    """Whether listening on `host` keeps the server on this machine ("" and "0.0.0.0" do not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(
    host: str, *, smtp_ports: list[int], auth: str, http_port: int | None, inbox_token: bool
) -> str | None:
    """Several lines for stderr when the listeners bind a non-loopback address, else None."""
    if is_loopback_host(host):
        return None
    ports = ("port " if len(smtp_ports) == 1 else "ports ") + ", ".join(str(port) for port in smtp_ports)
    who = ("anyone with the login (--username, --password)" if auth == "required"
           else f"anyone who can reach it, no login needed (--auth {auth}),")
    lines = [
        f"WARNING: fake-smtp listens on {host}, reachable from other machines.",
        f"SMTP ({ports}): {who} can send mail into it.",
    ]
    if http_port is not None and not inbox_token:
        lines += [
            f"Inbox API (port {http_port}) has NO TOKEN: anyone who can reach it can READ and DELETE",
            "every captured message (password resets, invitations, whatever your app sends).",
            "Set --inbox-token-env NAME (the token in that environment variable), or bind 127.0.0.1.",
        ]
    elif http_port is not None:
        lines.append(f"Inbox API (port {http_port}) needs the bearer token; it is plain HTTP, so use a trusted "
                     "network.")
    body = "\n".join(f"!! {line}" for line in lines)
    return f"\n{BAR}\n{body}\n{BAR}\n"
