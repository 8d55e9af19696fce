"""The PostgreSQL server the benchmark uses.

BENCH_DATABASE_URL, else TEST_DATABASE_URL (the tests' server), else a local
server with trust authentication. Throwaway databases come from the template
tests' `fresh_databases`, which reads TEST_DATABASE_URL: `connect` sets it.
"""

import os
from urllib.parse import urlsplit

import psycopg

from tests.support.databases import admin_conninfo

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class DatabaseUnreachableError(Exception):
    pass


def server_url() -> str:
    return (
        os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL
    )


def connect(url: str) -> str:
    """Check that the server answers and make it the one under test; its version."""
    try:
        with psycopg.connect(url.replace("+asyncpg", ""), connect_timeout=5) as connection:
            row = connection.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise DatabaseUnreachableError(
            f"cannot connect to PostgreSQL at {url}: {exc}\n"
            "Set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to a PostgreSQL 15+ server "
            "where this user may create databases."
        ) from exc
    os.environ["TEST_DATABASE_URL"] = url
    return str(row[0]) if row else "?"


def connections_opened(url: str) -> int:
    """Connections ever opened to the database of `url`: their growth is pool churn."""
    database = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_conninfo()) as connection:
        row = connection.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    return int(row[0]) if row else 0
