"""The request's session: a connection that broke mid-request never goes back to the pool."""

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.db.session import close_or_discard


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
