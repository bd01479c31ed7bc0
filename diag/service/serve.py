"""`smtp-diag serve`: settings, logging, optional demo servers, then uvicorn on a socket we bound.

Binding the socket ourselves means the URL printed at start is the real one (port 0 included) and the
service accepts connections from the moment it is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import resource
import signal
import socket
import sys
from contextlib import ExitStack
from typing import Any, Final, TextIO

import uvicorn

from diag.service.app import allowed_hosts, create_app
from diag.service.connections import ConnectionGuard, guarded_protocol
from diag.service.descriptors import watch_descriptors
from diag.service.event_loop import running_loop_name, service_loop
from diag.service.logs import configure_service_logging
from diag.service.settings import Settings, SettingsError, is_loopback_host

# The listen backlog, and so (asyncio accepts up to this many per wake-up, before any is admitted or refused)
# how many descriptors a burst of connections can take beyond the connection cap.
ACCEPT_BACKLOG: Final = 128


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host.strip("[]"), port), family=family, backlog=ACCEPT_BACKLOG)
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


def raise_open_file_limit() -> int:
    """The soft RLIMIT_NOFILE up to the hard one (often 1,024 soft for 500,000+ hard); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    if hard == resource.RLIM_INFINITY or soft < hard:
        # Linux refuses an infinite RLIMIT_NOFILE (it is capped by fs.nr_open, 1,048,576 by default).
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):  # some sandboxes refuse; the soft limit then stands
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def connection_cap(settings: Settings, open_file_limit: int) -> int:
    """DIAG_MAX_CONNECTIONS, lowered when it would not leave descriptors for a burst of accepts, the runs'
    SMTP and DNS sockets, the store and the logs: the cap must be reached before the descriptor limit."""
    reserved = ACCEPT_BACKLOG + 64 + 4 * settings.max_concurrent_runs
    return max(1, min(settings.max_connections, open_file_limit - reserved))


def uvicorn_config(app: Any, settings: Settings, max_connections: int) -> uvicorn.Config:
    guard = ConnectionGuard(max_connections, header_timeout_s=settings.header_timeout_s)
    # No limit_concurrency: uvicorn counts connections for it but still accepts and holds every one; it
    # would also answer 503 to the request of a connection the guard has just admitted at the cap.
    return uvicorn.Config(
        app,
        loop=service_loop()[0],  # what run_server runs; uvicorn.Server.run would pick the same
        http=guarded_protocol(guard),  # httptools, with the connection cap and the head's deadline and size bound
        # No route speaks WebSocket; with a WebSocket library installed, an upgrade would hand the socket to a
        # protocol the guard does not see.
        ws="none",
        backlog=ACCEPT_BACKLOG,
        timeout_keep_alive=settings.keep_alive_s,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )


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
    hosts = allowed_hosts(settings).hosts
    source = "DIAG_ALLOWED_HOSTS" if settings.allowed_hosts is not None else "the default; set DIAG_ALLOWED_HOSTS"
    return f"{', '.join(hosts)} (any port; {source} to change)"


async def serve_until_stopped(server: uvicorn.Server, sock: socket.socket, url: str, err: TextIO) -> None:
    """uvicorn's serve, with the descriptor watch beside it (uvloop reports no failed accept() itself)."""
    print(f"smtp-diag: event loop {running_loop_name()}", file=err)
    print(f"smtp-diag: serving on {url}", file=err, flush=True)
    watch = asyncio.create_task(watch_descriptors())
    try:
        await server.serve(sockets=[sock])
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch


def freeze_startup_objects() -> None:
    """Leave what start-up made (modules, the app, its settings and tables) out of every later garbage
    collection: they live as long as the process, yet each full collection walked them all again, an
    event-loop pause that grows with the imports. With them frozen, a full collection under 200 STARTTLS +
    AUTH runs in flight paused the loop ~16 instead of ~33 ms, and the loop's lag p99 went from 64 to 56 ms
    (bench/event_loop.py, docs/performance.md). Start-up's garbage is collected first, not frozen.

    The collector is then on, whoever turned it off: the `smtp-diag` command leaves it off for its short-lived
    commands (diag/__main__.py), and a service lives for weeks."""
    gc.collect()
    gc.freeze()
    gc.enable()


def run_server(server: uvicorn.Server, sock: socket.socket, url: str, err: TextIO) -> None:
    """On the service's loop (event_loop.service_loop: uvloop, else asyncio), as uvicorn.Server.run would."""
    with asyncio.Runner(loop_factory=service_loop()[1]) as runner:
        runner.run(serve_until_stopped(server, sock, url, err))


def _stopped_by_sigterm(signum: int, frame: object) -> None:
    """SIGTERM after uvicorn's shutdown: the server has stopped cleanly; nothing is left to do."""


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
    # What depends on the bind sees the real one: the default Host allow list, and custom DNS servers
    # (allowed by default on loopback only).
    settings = dataclasses.replace(settings, host=host, port=port)
    configure_service_logging(settings.log_level)
    open_file_limit = raise_open_file_limit()
    max_connections = connection_cap(settings, open_file_limit)
    if max_connections < settings.max_connections:
        print(
            f"smtp-diag: at most {max_connections} connections (DIAG_MAX_CONNECTIONS is "
            f"{settings.max_connections}): the process may open only {open_file_limit} files (ulimit -n)",
            file=err,
        )
    warning = exposure_warning(host, settings)
    if warning:
        print(warning, file=err)
    with ExitStack() as stack:
        presets: list[dict[str, Any]] = []
        if demo:
            try:  # the demo servers are the bundled fake server: an extra, not a dependency of the product
                from diag.service.demo import DemoServers
            except ImportError:
                print("smtp-diag: --demo needs the demo extra (the bundled fake SMTP server): "
                      "pip install 'smtp-diag[demo]'", file=err)
                return 2
            servers = stack.enter_context(DemoServers())
            presets = servers.presets
            settings = with_demo_ports(settings, servers.ports)
            print(f"smtp-diag: demo SMTP servers on 127.0.0.1 ports {sorted(servers.ports)}:", file=err)
            for preset in presets:  # which server is which: the page's presets, by port
                print(f"  {preset['config']['port']:>5}  {preset['label']}: {preset['description']}", file=err)
        try:
            sock = bind_socket(host, port)
        except OSError as exc:
            print(f"smtp-diag: cannot listen on {host}:{port}: {exc.strerror or exc}", file=err)
            return 1
        stack.callback(sock.close)
        app = create_app(settings, presets=presets)
        bound_port = sock.getsockname()[1]
        print(f"smtp-diag: accepting Host headers {accepted_hosts_line(settings)}", file=err)
        config = uvicorn_config(app, settings, max_connections)
        freeze_startup_objects()
        # Ctrl-C / SIGTERM is how a server is stopped: uvicorn shuts down cleanly, then re-raises the
        # KeyboardInterrupt; that is a normal end (exit 0), not an interrupted command (130).
        # uvicorn re-raises the signal it caught once it has shut down; with the default SIGTERM action that
        # kills the process (exit 143). A handler that does nothing lets the clean shutdown end in exit 0.
        previous = signal.signal(signal.SIGTERM, _stopped_by_sigterm)
        try:
            with contextlib.suppress(KeyboardInterrupt):
                run_server(uvicorn.Server(config), sock, url_for(host, bound_port), err)
        finally:
            signal.signal(signal.SIGTERM, previous)
        print("smtp-diag: stopped", file=err, flush=True)
    return 0
