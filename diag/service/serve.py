"""`smtp-diag serve`: settings, logging, optional demo servers, then uvicorn on a socket we bound.

Binding the socket ourselves means the URL printed at start is the real one (port 0 included) and the
service accepts connections from the moment it is printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import sys
from contextlib import ExitStack
from typing import Any, TextIO

import uvicorn

from diag.settings import Settings, SettingsError, is_loopback_host


def configure_service_logging(level: str, stream: TextIO | None = None) -> None:
    from diag.logging import configure_logging

    configure_logging(json=True, level=level, stream=stream)


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host.strip("[]"), port), family=family, backlog=256)
    # Accepted sockets inherit it: without it keep-alive responses waited ~44 ms for delayed ACKs here
    # (measured by bench/load.py), whatever asyncio sets on the transport later.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def with_demo_ports(settings: Settings, ports: frozenset[int]) -> Settings:
    """The policy must let the demo's loopback ports through, whatever else it says."""
    allowed = None if settings.allowed_ports is None else settings.allowed_ports | ports
    allow_networks = settings.allow_networks
    if allow_networks:
        allow_networks = (*allow_networks, "127.0.0.1/32")
    return dataclasses.replace(settings, allowed_ports=allowed, allow_networks=allow_networks)


def exposure_warning(host: str, settings: Settings) -> str | None:
    """The loud warning for a service other machines can reach without a token, else None."""
    if settings.api_token is not None or is_loopback_host(host):
        return None
    bar = "!" * 78
    return (
        f"\n{bar}\n!! WARNING: serving on {host}, reachable from other machines, WITHOUT a token.\n"
        "!! Anyone who can reach it can make this machine connect to SMTP servers.\n"
        f"!! Set DIAG_API_TOKEN (and DIAG_ALLOW_NETWORKS / DIAG_DENY_NETWORKS).\n{bar}\n"
    )


def accepted_hosts_line(settings: Settings) -> str:
    from diag.service.app import allowed_hosts

    hosts = allowed_hosts(settings).hosts
    source = "DIAG_ALLOWED_HOSTS" if settings.allowed_hosts is not None else "the default; set DIAG_ALLOWED_HOSTS"
    return f"{', '.join(hosts)} (any port; {source} to change)"


def main(host: str | None = None, port: int | None = None, demo: bool = False, *, err: TextIO = sys.stderr) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"smtp-diag: configuration error: {exc}", file=err)
        return 2
    # Flags win; DIAG_HOST / DIAG_PORT (whose defaults are 127.0.0.1:8025) apply when a flag is not given.
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    assert host is not None and port is not None
    # The app derives its default Host allow list from where it listens.
    settings = dataclasses.replace(settings, host=host, port=port)
    configure_service_logging(settings.log_level)
    warning = exposure_warning(host, settings)
    if warning:
        print(warning, file=err)
    with ExitStack() as stack:
        presets: list[dict[str, Any]] = []
        if demo:
            from diag.service.demo import DemoServers

            servers = stack.enter_context(DemoServers())
            presets = servers.presets
            settings = with_demo_ports(settings, servers.ports)
            print(f"smtp-diag: demo SMTP servers on 127.0.0.1 ports {sorted(servers.ports)}", file=err)
        try:
            sock = bind_socket(host, port)
        except OSError as exc:
            print(f"smtp-diag: cannot listen on {host}:{port}: {exc.strerror or exc}", file=err)
            return 1
        stack.callback(sock.close)
        from diag.service.app import create_app

        app = create_app(settings, presets=presets)
        bound_port = sock.getsockname()[1]
        print(f"smtp-diag: accepting Host headers {accepted_hosts_line(settings)}", file=err)
        print(f"smtp-diag: serving on {url_for(host, bound_port)}", file=err, flush=True)
        config = uvicorn.Config(app, log_config=None, access_log=False, proxy_headers=False, server_header=False)
        # Ctrl-C / SIGTERM is how a server is stopped: uvicorn shuts down cleanly, then re-raises the
        # KeyboardInterrupt; that is a normal end (exit 0), not an interrupted command (130).
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[sock])
        print("smtp-diag: stopped", file=err, flush=True)
    return 0
