"""A real PostgreSQL 15 from Debian for the tests: one server per pytest session, a fresh
database per test.

PostgreSQL refuses to run as root, so the server runs as an unprivileged system user
(``ocigate-pg``, created once when missing) in a temporary directory it owns, on a free
loopback port, with fsync off (a test database needs no durability). Consumers import the
fixtures into their conftest: ``from parts.postgres import postgres_server, postgres_url``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "ocigate-pg"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(args: list[str]) -> list[str]:
    """``args`` run as the unprivileged user when we are root (else as ourselves)."""
    return ["runuser", "-u", USER, "--", *args] if os.geteuid() == 0 else args


def _ensure_user() -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", USER], check=True, timeout=30
        )


class PostgresServer:
    """One PostgreSQL cluster in ``directory``; ``stop()``/``start()``/``restart()`` let a test
    take the database away from a running application and give it back on the same port."""

    def __init__(self, directory: Path) -> None:
        if not (BIN / "postgres").exists():
            raise RuntimeError(f"no PostgreSQL 15 in {BIN}: apt-get install postgresql-15")
        self.directory = directory
        self.data = directory / "data"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.running = False
        self._run(
            [
                str(BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(_as_user(args), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -k {self.directory}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300"
        )
        self._run(
            [
                str(BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.directory / "pg.log"),
                "-w",
                "-o",
                options,
                "start",
            ]
        )
        self.running = True

    def stop(self) -> None:
        """A fast shutdown: connected sessions are terminated at once."""
        self._run([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the server and its backends: connections stay open, nothing answers (a
        hung machine or a black-holed network, as a client sees it)."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def _processes(self) -> list[int]:
        """The postmaster (from its pid file) and its children (from /proc)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement with psql in ``database``; its output."""
        done = subprocess.run(
            [
                str(BIN / "psql"),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.url(database),
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {statement!r} failed: {done.stderr}")
        return done.stdout


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    _ensure_user()
    # Not pytest's tmp_path: its parents are private to root, and the server user must enter.
    directory = Path(tempfile.mkdtemp(prefix="ocigate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, USER)
    server = PostgresServer(directory)
    server.start()
    try:
        yield server
    finally:
        try:
            if server.running:
                server.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex}"
    # FILE_COPY: with fsync off a plain copy of template1 takes 60 ms, WAL_LOG (the default)
    # 300 ms.
    postgres_server.sql(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
    yield postgres_server.url(name)
    if not postgres_server.running:  # a test that stopped it failed before starting it again
        postgres_server.start()
    postgres_server.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
