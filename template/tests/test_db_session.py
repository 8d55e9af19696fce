"""The request's session: no round trip it does not need, and no broken connection reused.

Most tests run on one rolled-back connection (tests/conftest.py); these use the
database as the app opens it, its own engine and sessions, as requests in
production do.
"""

import asyncio

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.core.access_tokens import AccessTokens
from app.core.config import settings
from app.core.user_manager import user_manager_on
from app.db.models.user import User
from app.db.session import (
    Database,
    autocommit_reads,
    close_or_discard,
    create_engine,
)


async def test_broken_connection_is_discarded_not_raised(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    session = AsyncSession(engine)
    pooled = await (await session.connection()).get_raw_connection()
    # What asyncpg raised when the database went away in the middle of a request.
    broken = DBAPIError(
        "ROLLBACK", None, Exception("cannot switch to state 15; another operation is in progress")
    )

    async def failing_close() -> None:
        raise broken

    monkeypatch.setattr(session, "close", failing_close)

    # After the response has started, an exception here would cut it off.
    await close_or_discard(session)

    assert not pooled.is_valid
    assert "Discarding a broken database connection" in caplog.text


async def in_one_transaction(session: AsyncSession) -> bool:
    """Whether two statements in a row run in the same transaction."""
    query = text("SELECT transaction_timestamp()")
    first = await session.scalar(query)
    second = await session.scalar(query)
    return bool(first == second)


async def assert_stored_as_committed(database: Database, user: User) -> None:
    """The database still holds `user` as committed: a rollback took every change back."""
    async with database.sessions() as session:
        stored = await session.get(User, user.id)
    assert stored is not None
    assert stored.is_verified == user.is_verified


async def test_autocommit_reads_need_no_transaction(
    app_database: Database, committed_user: User
) -> None:
    async with app_database.sessions() as session:
        async with autocommit_reads(session):
            assert not await in_one_transaction(session)
            user = await session.get(User, committed_user.id)

        # Nothing held: the connection is back in the pool, the user still in the session.
        assert not session.in_transaction()
        assert app_database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert user is not None
        assert user in session

        # What comes next is a transaction as usual: a rollback undoes its writes.
        user.is_verified = not committed_user.is_verified
        await session.flush()
        assert await in_one_transaction(session)
        await session.rollback()

    await assert_stored_as_committed(app_database, committed_user)


async def test_autocommit_reads_join_a_transaction_in_progress(
    app_database: Database, committed_user: User
) -> None:
    async with app_database.sessions() as session, session.begin():
        await session.get(User, committed_user.id)
        async with autocommit_reads(session):
            assert await in_one_transaction(session)
        assert session.in_transaction()


async def test_autocommit_reads_never_flush_pending_changes(
    app_database: Database, committed_user: User
) -> None:
    async with app_database.sessions() as session:
        async with autocommit_reads(session):
            user = await session.get(User, committed_user.id)
        assert user is not None
        user.is_verified = not committed_user.is_verified  # Not flushed yet.
        async with autocommit_reads(session):
            # The query flushes the change first: inside a transaction, as usual...
            await session.scalar(select(User).where(User.id == committed_user.id))
            assert await in_one_transaction(session)
        await session.rollback()

    # ...so the rollback took it back.
    await assert_stored_as_committed(app_database, committed_user)


async def test_authentication_reads_without_a_transaction(
    app_database: Database, committed_user: User
) -> None:
    async with app_database.sessions() as session:  # The login's.
        token = await AccessTokens(session).write_token(committed_user)

    async with app_database.sessions() as session:  # A later request's.
        user = await AccessTokens(session).read_token(token, user_manager_on(session))

        assert user is not None
        assert user.id == committed_user.id
        # Attached to the request's session, for the endpoint to change it...
        assert user in session
        # ...which holds no transaction, nor a connection, until it needs one.
        assert not session.in_transaction()
        assert app_database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_connection_the_server_closed_is_replaced_before_use(
    app_database: Database, connection: AsyncConnection
) -> None:
    """As after a database restart: the next request gets a new connection, not an error."""
    async with app_database.engine.connect() as pooled:
        closed_pid = await pooled.scalar(text("SELECT pg_backend_pid()"))
    # Back in the pool, idle; the server ends it, as a restart does (and waits until it has).
    terminate = text("SELECT pg_terminate_backend(:pid, :timeout_ms)")
    assert await connection.scalar(terminate, {"pid": closed_pid, "timeout_ms": 5000})
    await asyncio.sleep(0.1)  # For the closed socket to reach asyncpg.

    async with app_database.engine.connect() as pooled:
        assert await pooled.scalar(text("SELECT pg_backend_pid()")) != closed_pid


@pytest.mark.parametrize("behind_pgbouncer", [True, False])
async def test_pgbouncer_setting_without_a_pooler_is_named_in_a_warning(
    engine: AsyncEngine, behind_pgbouncer: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The test database is reached directly: the setting costs speed, and says so once."""
    configured = settings.model_copy(update={"DATABASE_BEHIND_PGBOUNCER": behind_pgbouncer})
    direct = create_engine(str(settings.TEST_DATABASE_URL), configured)
    try:
        for _ in range(2):
            async with direct.connect() as connection:
                # The same statement twice: prepared anew each time, under a unique name.
                assert await connection.scalar(text("SELECT 1")) == 1
                assert await connection.scalar(text("SELECT 1")) == 1
    finally:
        await direct.dispose()

    warnings = [
        r.getMessage() for r in caplog.records if "DATABASE_BEHIND_PGBOUNCER" in r.getMessage()
    ]
    assert len(warnings) == (1 if behind_pgbouncer else 0)
