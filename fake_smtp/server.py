"""FakeSMTP: start and stop the listeners (plain/STARTTLS, implicit TLS, inbox HTTP API).

The server runs its own event loop in a background thread, so the same object serves synchronous code
(`with FakeSMTP() as srv:`) and asyncio code (`async with FakeSMTP() as srv:`) without blocking the
caller's loop. We create the listening sockets ourselves (not aiosmtpd's Controller, whose readiness
probe dials the configured port and so fails with port 0): `start()` returns once they accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, get_args

from fake_smtp.address_rules import AddressRule, AddressRules
from fake_smtp.auth import AUTH_FAILED, AuthReplies, Credentials
from fake_smtp.cert_faults import make_faulty_cert, parse_cert_fault
from fake_smtp.certs import CertFiles, server_context, write_self_signed
from fake_smtp.event_loop import LoopChoice, check_loop_choice, loop_name, new_event_loop
from fake_smtp.exposure import is_loopback_host
from fake_smtp.faults import Fault, FaultPlan
from fake_smtp.handler import Handler
from fake_smtp.inbox_guard import HostPolicy, InboxToken
from fake_smtp.logs import logger
from fake_smtp.mailbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Mailbox, Message
from fake_smtp.policies import Policies
from fake_smtp.protocol import FakeSMTPProtocol, Runtime
from fake_smtp.scenarios import resolve as resolve_scenario
from fake_smtp.xoauth2 import Style as XOAuth2Style
from fake_smtp.xoauth2 import XOAuth2

# offered: AUTH is advertised and checked, but mail is taken without it, so the address rules decide (Postfix
# with its default smtpd_delay_reject=yes refuses an anonymous client only at RCPT TO, in its own words).
AuthMode = Literal["none", "required", "offered"]
# implicit-only: a single listener that speaks TLS from the first byte (`port` and `tls_port` are the same).
TlsMode = Literal["off", "starttls", "implicit", "both", "implicit-only"]
AUTH_MODES: tuple[str, ...] = get_args(AuthMode)
TLS_MODES: tuple[str, ...] = get_args(TlsMode)
DEFAULT_MAX_SIZE = 10 * 1024 * 1024
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
IDENT = "ESMTP fake-smtp"



# Connections the kernel holds for us until the loop accepts them. With asyncio's default (100), a burst
# of more connections than that while the loop is busy (200 diagnoses at once in bench/load.py and
# bench/event_loop.py) loses SYNs, and each such client waits a second for its SYN to be sent again
# (issue 13; tests/fake_smtp/test_robustness.py). The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG: Final = 1024


class FakeSMTP:
    """A fake SMTP server, on loopback unless `host` says otherwise. Port 0 means an ephemeral port; read
    `port` after start. `inbox_token` (a bearer token for the inbox API) is kept only as an `InboxToken`."""

    def __init__(
        self,
        *,
        auth: AuthMode = "none",
        tls: TlsMode = "off",
        username: str = "user",
        password: str = "password",  # noqa: S107 -- a fake server's documented default
        host: str = "127.0.0.1",
        port: int = 0,
        tls_port: int = 0,
        hostname: str = "localhost",
        cert: str | Path | None = None,
        key: str | Path | None = None,
        ca_out: str | Path | None = None,
        require_starttls: bool = False,
        faults: Iterable[Fault] = (),
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_inbox_bytes: int = DEFAULT_MAX_BYTES,
        maildir: str | Path | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
        http_port: int | None = None,
        inbox_token: str | None = None,
        inbox_allowed_hosts: Iterable[str] = (),
        idle_timeout: float = 60.0,
        scenario: str | None = None,
        cert_fault: str | None = None,
        address_rules: Iterable[AddressRule | str] = (),
        xoauth2_token: str | None = None,
        xoauth2_style: XOAuth2Style = "gmail",
        seed: int | None = None,
        event_loop: LoopChoice = "auto",
    ) -> None:
        # A scenario sets auth, TLS, STARTTLS policy and the XOAUTH2 style unless the caller chose them
        # (non-default values win).
        setup = None if scenario is None else resolve_scenario(scenario)[1]
        if setup is not None:
            auth = auth if auth != "none" else setup.options.get("auth", auth)
            tls = tls if tls != "off" else setup.options.get("tls", tls)
            require_starttls = require_starttls or setup.options.get("require_starttls", False)
            xoauth2_style = xoauth2_style if xoauth2_style != "gmail" else setup.options.get("xoauth2_style", "gmail")
            faults = [*setup.faults, *faults]
        if auth not in AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(AUTH_MODES)}, got {auth!r}")
        check_loop_choice(event_loop)
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {', '.join(TLS_MODES)}, got {tls!r}")
        if (cert is None) != (key is None):
            raise ValueError("cert and key must be given together")
        if cert_fault is not None:
            parse_cert_fault(cert_fault)
            if cert is not None:
                raise ValueError("cert_fault makes its own certificate: leave cert and key out")
            if tls == "off":
                raise ValueError("cert_fault needs TLS: tls='starttls', 'implicit', 'both' or 'implicit-only'")
        if require_starttls and tls not in ("starttls", "both"):
            raise ValueError("require_starttls needs tls='starttls' or tls='both'")
        if auth != "none" and not (username and password):
            raise ValueError(f"auth={auth!r} needs a username and a password")
        if xoauth2_token is not None and auth != "required":
            raise ValueError("xoauth2_token needs auth='required' (XOAUTH2 logs in as `username`)")
        if max_size is not None and max_size < 1:
            raise ValueError("max_size must be >= 1 (or None for no limit)")
        if max_size is not None and max_inbox_bytes < max_size:
            # Otherwise a message the server accepts (250) could be dropped the moment it is stored.
            raise ValueError(f"max_inbox_bytes ({max_inbox_bytes}) must be at least max_size ({max_size})")
        if inbox_token is not None and http_port is None:
            raise ValueError("inbox_token needs http_port (the inbox API it protects)")
        self.scenario = scenario
        self._loop_choice: LoopChoice = event_loop
        self.auth: AuthMode = auth
        self.tls: TlsMode = tls
        self.hostname = hostname
        self._bind_host = host
        self._requested = {"smtp": port, "smtps": tls_port, "http": http_port}
        self._cert_files = None if cert is None or key is None else CertFiles(Path(cert), Path(key))
        self.cert_fault = cert_fault
        self._ca_out = None if ca_out is None else Path(ca_out)
        self._max_size = max_size
        self._idle_timeout = idle_timeout
        self._inbox_token = None if inbox_token is None else InboxToken(inbox_token)
        self._inbox_hosts = HostPolicy(host, inbox_allowed_hosts)
        self._address_rules = AddressRules(address_rules)  # first: a rule the user wrote beats a scenario
        self._runtime = Runtime(
            faults=FaultPlan(faults, seed),
            mailbox=Mailbox(max_messages, None if maildir is None else Path(maildir), max_inbox_bytes),
            credentials=Credentials(username, password) if auth != "none" else None,
            require_login=auth == "required",
            require_starttls=require_starttls,
            policies=Policies((self._address_rules, *(() if setup is None else setup.policies))),
            xoauth2=None if xoauth2_token is None else XOAuth2(username, xoauth2_token, xoauth2_style),
            auth_replies=AuthReplies(
                failure=(setup and setup.auth_failure_reply) or AUTH_FAILED,
                refusal=None if setup is None else setup.basic_auth_refusal,
            ),
        )
        self._handler = Handler(self._runtime)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self._http: Any = None  # uvicorn.Server, imported only when the inbox API is asked for
        self._http_task: asyncio.Task[None] | None = None
        self._tempdir: Path | None = None
        self.port: int = 0
        self.tls_port: int | None = None
        self.http_port: int | None = None
        self.ca_pem: Path | None = None

    def __repr__(self) -> str:
        scenario = "" if self.scenario is None else f", scenario={self.scenario!r}"
        return f"FakeSMTP(auth={self.auth!r}, tls={self.tls!r}{scenario}, host={self.host!r}, port={self.port})"

    # -- what clients and tests use -------------------------------------------------------------
    @property
    def host(self) -> str:
        return self._bind_host

    @property
    def event_loop(self) -> str | None:
        """The loop the server runs on ('uvloop' or 'asyncio'), None while it is not started."""
        return None if self._loop is None else loop_name(self._loop)

    @property
    def exposed(self) -> bool:
        """Whether the listeners bind an address other machines may reach."""
        return not is_loopback_host(self.host)

    @property
    def inbox_token_set(self) -> bool:
        return self._inbox_token is not None

    @property
    def http_url(self) -> str | None:
        return None if self.http_port is None else f"http://{_url_host(self.host)}:{self.http_port}"

    @property
    def messages(self) -> list[Message]:
        return self._runtime.mailbox.snapshot()

    @property
    def mailbox(self) -> Mailbox:
        return self._runtime.mailbox

    @property
    def faults(self) -> list[Fault]:
        return self._runtime.faults.faults

    def clear(self) -> None:
        self._runtime.mailbox.clear()

    @property
    def seed(self) -> int:
        """The seed of the fault rules' random draws: pass it back as `seed=` to replay a run."""
        return self._runtime.faults.seed

    def set_faults(self, faults: Iterable[Fault], seed: int | None = None) -> None:
        """Replace the fault rules (counts and random sequence restart, from `seed` or a fresh one);
        sessions already running see the new rules at their next step."""
        self._runtime.faults.replace(faults, seed)

    @property
    def address_rules(self) -> list[AddressRule]:
        return list(self._address_rules.rules)

    def set_address_rules(self, rules: Iterable[AddressRule | str]) -> None:
        """Replace the per-address rules (text like ``rcpt:*@bounce.test=550 5.1.1``) while running."""
        self._address_rules.replace(rules)

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[Message]:
        return self._runtime.mailbox.wait_for(count, timeout)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeSMTP:
        if self._thread is not None:
            raise RuntimeError("FakeSMTP is already started")
        loop = new_event_loop(self._loop_choice)
        self._loop = loop
        self._thread = threading.Thread(target=self._run_loop, args=(loop,), name="fake-smtp", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), loop).result(timeout=START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=STOP_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=STOP_TIMEOUT)
            self._loop = self._thread = None
            if self._tempdir is not None:
                shutil.rmtree(self._tempdir, ignore_errors=True)
                self._tempdir = None
            logger().info("stopped")

    def __enter__(self) -> FakeSMTP:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeSMTP:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- inside the server's loop ---------------------------------------------------------------
    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @contextlib.contextmanager
    def _naming_port(self, listener: str) -> Iterator[None]:
        """'[Errno 98] Address already in use' alone does not say which of up to three ports it was."""
        try:
            yield
        except OSError as error:
            port = self._requested[listener]
            why = "already in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
            raise OSError(error.errno, f"{listener} port {port} on {self._bind_host}: {why}") from error

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        context = self._tls_context() if self.tls != "off" else None
        starttls_context = context if self.tls in ("starttls", "both") else None
        if self.tls != "implicit-only":
            with self._naming_port("smtp"):
                plain = await loop.create_server(
                    lambda: self._protocol(starttls_context, implicit_tls=False),
                    self._bind_host, self._requested["smtp"], backlog=LISTEN_BACKLOG,
                )
            self._servers.append(plain)
            self.port = _bound_port(plain)
        if self.tls in ("implicit", "both", "implicit-only"):
            assert context is not None
            # implicit-only has one listener: it takes `port` (the port clients are told to use).
            listener = "smtp" if self.tls == "implicit-only" else "smtps"
            with self._naming_port(listener):
                smtps = await loop.create_server(
                    lambda: self._protocol(None, implicit_tls=True), self._bind_host, self._requested[listener],
                    ssl=context, backlog=LISTEN_BACKLOG,
                )
            self._servers.append(smtps)
            self.tls_port = _bound_port(smtps)
            if self.tls == "implicit-only":
                self.port = self.tls_port
        if self._requested["http"] is not None:
            with self._naming_port("http"):
                await self._start_http(self._requested["http"])
        logger().info("listening", host=self.host, port=self.port, tls_port=self.tls_port,
                 http_port=self.http_port, auth=self.auth, tls=self.tls,
                 ca_pem=None if self.ca_pem is None else str(self.ca_pem),
                 inbox_token=self.inbox_token_set, max_inbox_bytes=self.mailbox.max_bytes, seed=self.seed,
                 scenario=self.scenario, cert_fault=self.cert_fault, loop=loop_name(loop))
        if self.exposed:
            logger().warning("listening on a non-loopback address: other machines can reach it",
                        host=self.host, inbox_token=self.inbox_token_set)

    def _protocol(self, starttls_context: ssl.SSLContext | None, *, implicit_tls: bool) -> FakeSMTPProtocol:
        return FakeSMTPProtocol(
            self._handler,
            self._runtime,
            implicit_tls=implicit_tls,
            # Plaintext AUTH only when TLS is off altogether, as real servers do.
            auth_needs_tls=self.tls != "off",
            hostname=self.hostname,
            ident=IDENT,
            tls_context=starttls_context,
            data_size_limit=self._max_size,
            timeout=self._idle_timeout,
            loop=asyncio.get_running_loop(),
        )

    def _tls_context(self) -> ssl.SSLContext:
        files = self._cert_files
        trust: Path | None = None
        if files is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="fake-smtp-"))
            if self.cert_fault is not None:
                faulty = make_faulty_cert(self.cert_fault, self.hostname, self._tempdir)
                files, trust = faulty.files, faulty.trust_pem
            else:
                files = write_self_signed(self.hostname, self._tempdir)
        context = server_context(files)  # fails early on unreadable or mismatched files
        trust = trust or files.cert
        if self._ca_out is not None:
            self._ca_out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(trust, self._ca_out)
            self.ca_pem = self._ca_out
        else:
            self.ca_pem = trust
        return context

    async def _start_http(self, port: int) -> None:
        import uvicorn

        from fake_smtp.inbox_api import create_inbox_app

        sock = socket.socket(_family(self._bind_host), socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._bind_host, port))
            sock.listen(128)
        except OSError:
            sock.close()  # a port in use must not leak the socket too
            raise
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_inbox_app(self._runtime.mailbox, hosts=self._inbox_hosts, token=self._inbox_token,
                             faults=self._runtime.faults, rules=self._address_rules),
            lifespan="off", log_config=None, access_log=False, log_level="warning",
            # h11, not "auto": smtp-diag depends on httptools now (for serve), which "auto" would pick, and
            # which bounds no request head; h11 refuses an unfinished head past 16 KiB.
            http="h11",
            # No client may pose as another through X-Forwarded-For; no version banner.
            proxy_headers=False, server_header=False,
        )
        self._http = uvicorn.Server(config)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        # The socket already listens, so clients queue; wait until uvicorn serves (or failed).
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()
                raise RuntimeError("inbox API stopped during startup")
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("inbox API did not start")
            await asyncio.sleep(0.01)

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        # Connections accepted just before the close wait as tasks to become transports; a task cancelled
        # before it starts never closes its socket. Three loop turns take each through asyncio's steps (task
        # start, transport, connection_made), so it is one of the connections aborted below.
        for _ in range(3):
            await asyncio.sleep(0)
        for connection in list(self._runtime.connections):
            connection.abort()
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            await asyncio.wait_for(self._http_task, STOP_TIMEOUT)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # A connection accepted just before the close was being made a transport; cancelling that closes the
        # transport, whose socket is released by a callback on the next loop turn: run it before the loop
        # stops, or the socket is left open (a ResourceWarning under a burst of connections).
        await asyncio.sleep(0)


def _bound_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
