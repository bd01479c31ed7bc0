"""A real PostgreSQL server for the tests: initdb + pg_ctl in a temporary directory, on a loopback port.

PostgreSQL refuses to run as root (CI is root), so there the server runs as the `postgres` user that Debian's
package creates (else `nobody`), in a directory handed to that user. `make postgres` installs the package;
its binaries live in /usr/lib/postgresql/<version>/bin, outside PATH. The server speaks only on 127.0.0.1
and on a socket in its own directory, and asks for a password (scram), so the URL the tests use holds one,
as a real DIAG_DB_URL does.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

PASSWORD = "pg-" + secrets.token_hex(8)  # a throwaway server's, made up per test run
USER = "diag"
START_TIMEOUT_S = 60


def bin_dir() -> Path:
    """Where initdb and pg_ctl are: PATH first, then Debian's versioned directory (newest version)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not candidates:
        raise RuntimeError("PostgreSQL's initdb was not found: run `make postgres` (Debian's postgresql package)")
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port

    def url(self, dbname: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{dbname}"

    @contextmanager
    def database(self) -> Iterator[str]:
        """A fresh, empty database for one test; dropped afterwards, whoever is still connected."""
        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as admin:
            admin.execute(f"CREATE DATABASE {name}".encode())
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    binaries = bin_dir()
    as_user: dict[str, object] = {}
    root = Path(tempfile.mkdtemp(prefix="diag-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            account = pwd.getpwnam("nobody")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    pwfile = root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        os.chown(pwfile, int(str(as_user["user"])), int(str(as_user["group"])))
    data = root / "data"
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=START_TIMEOUT_S, cwd=root, env=env,
                       **as_user)  # type: ignore[call-overload]

    run(str(binaries / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
        "--auth=scram-sha-256", "-E", "UTF8", "--no-sync")
    server = None
    for _attempt in range(3):  # a free port can be taken by another test between the probe and the bind
        port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off"
                   " -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB")
        try:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                "-t", str(START_TIMEOUT_S), "-o", options, "start")
        except subprocess.CalledProcessError:
            continue
        server = PostgresServer(root, port)
        break
    if server is None:
        log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start:\n{log[-2000:]}")
    try:
        yield server
    finally:
        try:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)
