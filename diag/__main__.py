"""The `smtp-diag` command (and `python -m diag`): the CLI in a process that ends as soon as its answer is out.

Three things a bare `diag.cli:main` entry point cannot do:

- End the process without tearing the interpreter down. After a `check`, Python's finalisation frees module by
  module what the run loaded (asyncio, OpenSSL's contexts, cryptography's bindings): 10-25 ms on this project's
  machines, after the report is already written, in every `smtp-diag check` a person or a script waits for
  (issue 13, docs/performance.md). What finalisation would still do that matters is done here first: the
  standard streams and the logging handlers are flushed. Nothing else of ours needs it: the CLI keeps no file
  open for writing, and the service closes its report store in its lifespan, before `serve` returns.
- Say "interrupted" for a Ctrl-C that comes while the CLI's modules are still being imported, instead of a
  traceback (the CLI catches it only once it runs).
- Leave the cyclic garbage collector off. A `check`'s imports make ~27,000 objects the collector tracks, nearly
  all of them living as long as the process; it ran 66 times while they were being made and found 569 objects
  of garbage: ~9 ms of a `check`'s start-up (issue 13). What a run makes in cycles (an exception's traceback
  and its frames) is a few kilobytes a stage, bounded by the run's stages and their timeouts, and freed at exit.
  `serve`, which lives long, turns the collector back on once its start-up's objects are frozen
  (serve.freeze_startup_objects).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from typing import NoReturn

EXIT_INTERRUPTED = 130  # diag.cli.EXIT_INTERRUPTED, repeated: importing diag.cli is what may be interrupted


def main() -> NoReturn:
    gc.disable()
    try:
        from diag import cli

        code = cli.main()
    except KeyboardInterrupt:
        sys.stderr.write("\nsmtp-diag: interrupted\n")
        code = EXIT_INTERRUPTED
    end_process(code)


def end_process(code: int) -> NoReturn:
    """Flush what finalisation would have flushed, then leave at once with `code`."""
    if "logging" in sys.modules:  # asyncio imports it; a `--help` never does
        import logging

        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        # OSError: the reader left (a closed pipe); ValueError: the stream is closed. Nothing to save either way.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
