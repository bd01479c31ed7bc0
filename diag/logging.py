"""structlog setup: JSON lines for machines, console lines for humans, secrets redacted in both.

One processor chain serves structlog loggers and stdlib loggers (uvicorn, aiosmtpd, asyncio), the latter
through `ProcessorFormatter`, so every line on the stream is formatted and redacted the same way.
Tracebacks become dicts *without* local variables: a password in a local must never reach a log.

structlog is imported only where it is configured or used: importing it pulls in rich's traceback and
pretty modules (~40 ms), which a `smtp-diag check` that logs nothing should not pay at start-up (issue 13).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TextIO

from diag.secret import MASK, Secret

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

SENSITIVE_KEY: Final = re.compile(r"^pass$|pass(word|wd)|secret|token|authorization|api_?key|cookie", re.I)
# "AUTH PLAIN <payload>" anywhere in a string; the mechanism stays, the payload goes.
AUTH_LINE: Final = re.compile(r"(?i)\b(AUTH\s+[A-Z0-9_-]+\s+)(\S+)")
BEARER: Final = re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+")
# An EHLO capability line ("AUTH LOGIN PLAIN CRAM-MD5") lists mechanisms, not a payload: keep it readable.
SASL_MECHANISMS: Final = frozenset(
    {
        "PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5", "XOAUTH2", "OAUTHBEARER", "GSSAPI", "NTLM",
        "SCRAM-SHA-1", "SCRAM-SHA-256", "ANONYMOUS", "EXTERNAL",
    }
)  # fmt: skip
MAX_DEPTH: Final = 8
OUR_HANDLER_NAME: Final = "diag.logging"
# Libraries that install their own plain-text handlers: we clear those so their lines reach ours.
ROUTED_LIBRARY_LOGGERS: Final = (
    "uvicorn", "uvicorn.error", "uvicorn.access", "aiosmtpd", "mail.log", "asyncio",
)  # fmt: skip


def redact_text(text: str) -> str:
    lowered = text.lower()
    if "auth" not in lowered and "bearer" not in lowered and "basic" not in lowered:
        return text  # the common case, every log line's every value: no regex to run

    def auth(match: re.Match[str]) -> str:
        if match.group(2).upper() in SASL_MECHANISMS:
            return match.group(0)
        return match.group(1) + MASK

    text = AUTH_LINE.sub(auth, text)
    return BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def redact_value(value: Any, depth: int = 0) -> Any:
    if type(value) in _PLAIN_SCALARS:  # most values of most lines: nothing to look at
        return value
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if depth >= MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {k: _redact_item(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, depth + 1) for v in value)
    return value


def _redact_item(key: Any, value: Any, depth: int) -> Any:
    # A flag such as password_set=True carries no secret; anything else under a sensitive name is masked.
    sensitive = isinstance(key, str) and _sensitive_key(key)
    if sensitive and value is not None and not isinstance(value, bool):
        return MASK
    return redact_value(value, depth)


@functools.lru_cache(maxsize=4096)  # the same few dozen names on every line (bounded: keys may come from data)
def _sensitive_key(key: str) -> bool:
    return SENSITIVE_KEY.search(key) is not None


# Exactly these types (not subclasses: a str subclass could be anything): they can hold no secret text.
_PLAIN_SCALARS: Final = frozenset({int, float, bool, type(None)})


def redact(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Mask secrets by key name, AUTH payloads and bearer tokens in text, and Secret objects."""
    for key in list(event_dict):
        if key in ("exc_info", "_record", "_from_structlog"):
            continue  # the traceback is redacted after dict_tracebacks has turned it into data
        event_dict[key] = _redact_item(key, event_dict[key], 0)
    return event_dict


def redact_exception(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Exception messages can quote what failed (an AUTH line, a header): redact the dict traceback too."""
    if "exception" in event_dict:
        event_dict["exception"] = redact_value(event_dict["exception"])
    return event_dict


def _shared_processors() -> list[Processor]:
    import structlog

    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _final_processors(*, json: bool, stream: TextIO) -> list[Processor]:
    import structlog
    from structlog.tracebacks import ExceptionDictTransformer

    if json:
        # A traceback as a dict, without local variables (a password in a local must never reach a log).
        exceptions: Processor = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))
        renderer: Processor = structlog.processors.JSONRenderer()
    else:
        # ConsoleRenderer wants the traceback as text: the stdlib's formatting, which shows no locals either
        # (a dict traceback here made every record with an exception a "--- Logging error ---" TypeError).
        exceptions = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    return [redact, exceptions, redact_exception, renderer]


class LibraryLogger:
    """What diag's modules log through. structlog's defaults print every event to stdout, which a library
    must not do to its user (the README's `run_sync` printed ten lines a run). Once structlog is configured
    (the CLI and the service do it through `configure_logging`; an application may do it its own way),
    events go through structlog; until then, to the stdlib logger of the same name, which says nothing
    unless the application configures logging, as Python libraries do."""

    __slots__ = ("_context", "_name")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}

    def bind(self, **values: Any) -> LibraryLogger:
        return LibraryLogger(self._name, {**self._context, **values})

    def debug(self, event: str, **values: Any) -> None:
        self._log(logging.DEBUG, "debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._log(logging.INFO, "info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._log(logging.WARNING, "warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._log(logging.ERROR, "error", event, values)

    def _log(self, level: int, method: str, event: str, values: dict[str, Any]) -> None:
        merged = {**self._context, **values}
        # Not imported here: structlog that nobody imported is not configured either.
        structlog = sys.modules.get("structlog")
        if structlog is not None and structlog.is_configured():
            getattr(_bound_logger(structlog, self._name), method)(event, **merged)
            return
        stdlib = logging.getLogger(self._name)
        if stdlib.isEnabledFor(level):
            pairs = " ".join(f"{key}={redact_value(value)!r}" for key, value in merged.items())
            stdlib.log(level, "%s %s", event, pairs)


# name -> (the structlog configuration it was built from, the bound logger). structlog.get_logger returns a
# lazy proxy that assembles a new bound logger on every call (16.3 us a JSON line instead of 11.9, eleven
# lines a run on the service's loop). structlog's own cache (cache_logger_on_first_use) would keep the first
# logger forever, and tests (or an application) reconfigure: so the logger is rebuilt whenever any object
# it was assembled from is no longer the configured one. Compared by identity: structlog.configure assigns
# new objects, and capture_logs edits the processor list in place, which a cached logger holds and sees.
_BOUND_LOGGERS: dict[str, tuple[tuple[Any, ...], Any]] = {}
_MAX_BOUND_LOGGERS: Final = 64  # a handful of module names; bounded in case a caller invents names


def _bound_logger(structlog: Any, name: str) -> Any:
    config = structlog.get_config()
    built_from = (config["processors"], config["context_class"], config["wrapper_class"], config["logger_factory"])
    cached = _BOUND_LOGGERS.get(name)
    if cached is not None and all(old is new for old, new in zip(cached[0], built_from, strict=True)):
        return cached[1]
    if len(_BOUND_LOGGERS) >= _MAX_BOUND_LOGGERS:
        _BOUND_LOGGERS.clear()
    # bind() with nothing assembles the logger the proxy would have used for this one line.
    logger = structlog.get_logger(name).bind()
    _BOUND_LOGGERS[name] = (built_from, logger)
    return logger


def get_logger(name: str) -> LibraryLogger:
    return LibraryLogger(name)


# Python's convention for a library: no output unless the application configures logging (not even
# warnings through logging's last-resort handler).
logging.getLogger("diag").addHandler(logging.NullHandler())


def configure_logging(*, json: bool, level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib logging through the same chain. Safe to call again."""
    out = stream if stream is not None else sys.stderr
    numeric = _level_number(level)
    _install_root_handler(_structlog_handler(json=json, numeric=numeric, stream=out), numeric)


def configure_logging_on_first_record(*, json: bool, level: str = "info", stream: TextIO | None = None) -> None:
    """configure_logging, deferred until something is logged at `level` or above: what `smtp-diag check`
    uses, so a run that logs nothing never imports structlog (issue 13: ~40 ms of its start-up). The first
    record configures structlog exactly as configure_logging would and is written through it, formatted
    and redacted the same. A later configure_logging replaces this stand-in like any handler of ours."""
    out = stream if stream is not None else sys.stderr
    numeric = _level_number(level)
    _install_root_handler(_ConfigureOnFirstRecord(json=json, numeric=numeric, stream=out), numeric)


class _ConfigureOnFirstRecord(logging.Handler):
    def __init__(self, *, json: bool, numeric: int, stream: TextIO) -> None:
        super().__init__(level=numeric)
        self._settings = (json, numeric, stream)
        self._real: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._real is None:
            json, numeric, stream = self._settings
            self._real = _structlog_handler(json=json, numeric=numeric, stream=stream)
        self._real.handle(record)


def _level_number(level: str) -> int:
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    return numeric


def _structlog_handler(*, json: bool, numeric: int, stream: TextIO) -> logging.Handler:
    """Configure structlog; the stdlib handler that formats foreign records through the same chain."""
    import structlog

    shared = _shared_processors()
    final = _final_processors(json=json, stream=stream)
    structlog.configure(
        processors=[*shared, *final],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    return handler


def _install_root_handler(handler: logging.Handler, numeric: int) -> None:
    handler.set_name(OUR_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == OUR_HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in ROUTED_LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True


def _isatty(stream: TextIO) -> bool:
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


__all__ = [
    "LibraryLogger",
    "configure_logging",
    "configure_logging_on_first_record",
    "get_logger",
    "redact",
    "redact_exception",
    "redact_text",
]
