"""fake-smtp: run the fake SMTP server from the command line until Ctrl-C or SIGTERM.

Prints one line per listener on stdout (stable, for scripts and tests to parse):

    smtp 127.0.0.1 2525
    smtps 127.0.0.1 2465
    ca-pem /tmp/fake-smtp-xxxx/cert.pem
    http http://127.0.0.1:8025
    ready

Session logs (connect, auth result without password, message accepted, disconnect) go to stderr, and so
does a loud warning when `--host` is not a loopback address.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn, TypeVar

import structlog

from fake_smtp.address_rules import parse_address_rule
from fake_smtp.cert_faults import parse_cert_fault
from fake_smtp.console import ConsoleLine
from fake_smtp.event_loop import LOOP_CHOICES
from fake_smtp.exposure import exposure_warning
from fake_smtp.faults import MAX_SEED, parse_fault
from fake_smtp.mailbox import DEFAULT_MAX_BYTES
from fake_smtp.scenarios import listing as scenario_listing
from fake_smtp.scenarios import resolve as resolve_scenario
from fake_smtp.server import AUTH_MODES, DEFAULT_MAX_SIZE, TLS_MODES, FakeSMTP
from fake_smtp.xoauth2 import STYLES as XOAUTH2_STYLES

T = TypeVar("T")

DEFAULT_PORT = 2525
DEFAULT_TLS_PORT = 2465


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r} (0-65535, 0 = any free port)")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser of ours: its ValueError becomes argparse's own one-line error."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _kept(parse: Callable[[str], object]) -> Callable[[str], str]:
    """Check the text with `parse`, keep the text (the server parses it again where it is used)."""

    def check(text: str) -> str:
        parse(text)
        return text

    return check


_scenario = _argument(_kept(resolve_scenario))
_cert_fault = _argument(_kept(parse_cert_fault))
_address_rule = _argument(parse_address_rule)
_fault = _argument(parse_fault)


def _seed(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a whole number 0-{MAX_SEED}, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="fake-smtp", description="A fake SMTP server for offline tests.")
    parser.add_argument("--auth", choices=AUTH_MODES, default="none")
    parser.add_argument("--tls", choices=TLS_MODES, default="off")
    parser.add_argument("--username", default=os.environ.get("FAKE_SMTP_USERNAME", "user"))
    parser.add_argument("--password", default=os.environ.get("FAKE_SMTP_PASSWORD", "password"),
                        help="or set FAKE_SMTP_PASSWORD, which keeps it out of the process list")
    parser.add_argument("--hostname", default="localhost", help="EHLO name and certificate SAN")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="plain/STARTTLS port")
    parser.add_argument("--tls-port", type=_port, default=DEFAULT_TLS_PORT, help="implicit TLS port")
    parser.add_argument("--cert", help="certificate PEM (default: a fresh self-signed one)")
    parser.add_argument("--key", help="private key PEM for --cert")
    parser.add_argument("--ca-out", help="where to write the PEM clients must trust")
    parser.add_argument("--require-starttls", action="store_true")
    parser.add_argument("--cert-fault", type=_cert_fault, metavar="FAULT",
                        help="expired, not-yet-valid, wrong-host, self-signed, untrusted-ca, "
                             "missing-intermediate or expiring-soon:DAYS; ca-pem is then what a client trusts")
    parser.add_argument("--fault", type=_fault, action="append", default=[], metavar="STEP=ACTION",
                        help="e.g. auth=reply:535, mail_from=delay:2, data=stall, ehlo=no-starttls")
    parser.add_argument("--rule", type=_address_rule, action="append", default=[], metavar="KIND:GLOB=CODE",
                        help="a reply by address, e.g. 'rcpt:*@bounce.test=550 5.1.1' or 'from:spoof@*=553'")
    parser.add_argument("--xoauth2-token-env", metavar="NAME",
                        help="accept AUTH XOAUTH2 as --username with the bearer token read from this environment "
                             "variable (it stays out of the process list)")
    parser.add_argument("--xoauth2-style", choices=XOAUTH2_STYLES, default="gmail",
                        help="how a bad token is refused: gmail (334 JSON, then 535) or microsoft (535 5.7.3)")
    parser.add_argument("--scenario", type=_scenario, metavar="NAME[:ARG]",
                        help="a named real-world failure, e.g. gmail-app-password, greylisting:5 "
                             "(see --list-scenarios)")
    parser.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--seed", type=_seed, help="seed for the faults' chance (@P) and delay ranges; "
                        "the one in use is printed as 'seed N' so a run can be replayed")
    parser.add_argument("--event-loop", choices=LOOP_CHOICES, default="auto",
                        help="auto (uvloop when installed, else asyncio), asyncio or uvloop")
    parser.add_argument("--http-port", type=_port, help="serve the inbox JSON API on this port")
    parser.add_argument("--inbox-token-env", metavar="NAME",
                        help="require Authorization: Bearer <token> on the inbox API, the token read from "
                             "this environment variable (so it stays out of the process list)")
    parser.add_argument("--inbox-allowed-host", action="append", default=[], metavar="NAME",
                        help="a Host name the inbox API answers besides localhost (repeatable)")
    parser.add_argument("--maildir", help="also store each message in this Maildir")
    parser.add_argument("--max-size", type=_positive, default=DEFAULT_MAX_SIZE, help="bytes (552 above)")
    parser.add_argument("--max-messages", type=_positive, default=1000)
    parser.add_argument("--max-inbox-bytes", type=_positive, default=DEFAULT_MAX_BYTES,
                        help="bytes of captured mail kept in memory; the oldest is dropped beyond it")
    return parser


def configure_logging(logger_factory: Callable[..., Any] | None = None) -> None:
    """The CLI's log lines on stderr; bench/fake_server.py passes a factory that drops the rendered line."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            ConsoleLine(),  # ConsoleRenderer(colors=False)'s text, cheaper per line
        ],
        logger_factory=logger_factory or structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # aiosmtpd's own logger repeats what we log; keep only its errors.
    logging.getLogger("mail.log").setLevel(logging.ERROR)


POSIX_SIGNALS: Final = hasattr(signal, "pthread_sigmask") and hasattr(signal, "sigwait")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_scenarios:
        print(scenario_listing())
        return 0
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    inbox_token = None
    if args.inbox_token_env is not None:
        inbox_token = os.environ.get(args.inbox_token_env)
        if not inbox_token:
            parser.error(f"--inbox-token-env: the environment variable {args.inbox_token_env} is not set or empty")
    xoauth2_token = None
    if args.xoauth2_token_env is not None:
        xoauth2_token = os.environ.get(args.xoauth2_token_env)
        if not xoauth2_token:
            parser.error(f"--xoauth2-token-env: the environment variable {args.xoauth2_token_env} is not set or empty")
    configure_logging()
    try:
        server = FakeSMTP(
            auth=args.auth, tls=args.tls, username=args.username, password=args.password,
            hostname=args.hostname, host=args.host, port=args.port, tls_port=args.tls_port,
            cert=args.cert, key=args.key, ca_out=args.ca_out, require_starttls=args.require_starttls,
            faults=args.fault, http_port=args.http_port, maildir=args.maildir, max_size=args.max_size,
            max_messages=args.max_messages, max_inbox_bytes=args.max_inbox_bytes, inbox_token=inbox_token,
            inbox_allowed_hosts=args.inbox_allowed_host, scenario=args.scenario,
            cert_fault=args.cert_fault, address_rules=args.rule, xoauth2_token=xoauth2_token,
            xoauth2_style=args.xoauth2_style, seed=args.seed, event_loop=args.event_loop,
        )
    except ValueError as error:
        parser.error(str(error))
    # Ctrl-C and SIGTERM stop the server; the main thread waits for them itself (sigwait). A handler would not
    # do: the kernel may hand the signal to the server's thread (the main thread had a SIGCONT pending, say),
    # and a Python handler only runs once the main thread wakes, which that delivery does not make it do: the
    # process went on serving until killed. Blocked before the server's thread starts, which inherits the
    # mask, the signals stay pending for the main thread's sigwait.
    stopping = {signal.SIGINT, signal.SIGTERM}
    if POSIX_SIGNALS:
        signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
    else:  # Windows: no signal masks, and only the main thread ever receives a signal
        stop = threading.Event()
        for signum in stopping:
            signal.signal(signum, lambda *_: stop.set())
    try:
        server.start()
    except (OSError, ValueError, TimeoutError) as error:
        print(f"fake-smtp: error: cannot start: {error}", file=sys.stderr)
        return 1
    try:
        warning = exposure_warning(
            server.host, smtp_ports=[p for p in (server.port, server.tls_port) if p is not None],
            auth=server.auth, http_port=server.http_port, inbox_token=server.inbox_token_set,
        )
        if warning:
            print(warning, file=sys.stderr, flush=True)
        print(f"smtp {server.host} {server.port}")
        if server.tls_port is not None and server.tls_port != server.port:
            print(f"smtps {server.host} {server.tls_port}")
        if server.ca_pem is not None:
            print(f"ca-pem {server.ca_pem}")
        if server.http_url is not None:
            print(f"http {server.http_url}")
        if server.faults:
            print(f"seed {server.seed}")
        print("ready", flush=True)
        if POSIX_SIGNALS:
            signal.sigwait(stopping)
        else:
            while not stop.wait(0.5):  # a timeout, so that Ctrl-C's handler gets to run
                pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
