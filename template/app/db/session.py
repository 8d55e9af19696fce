"""The engine, the session factory and the request-scoped session dependency."""

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import settings

logger = logging.getLogger(__name__)

engine = create_async_engine(
    settings.database_url,
    pool_size=settings.DATABASE_POOL_SIZE,
    max_overflow=settings.DATABASE_MAX_OVERFLOW,
    pool_timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
    # Checks a pooled connection before handing it out, so that a database
    # restart costs one reconnect instead of one failed request per connection.
    pool_pre_ping=True,
    connect_args={
        "timeout": settings.DATABASE_POOL_TIMEOUT_SECONDS,
        "command_timeout": settings.DATABASE_STATEMENT_TIMEOUT_SECONDS,
        "server_settings": {"application_name": settings.PROJECT_NAME},
    },
)

# fastapi-users commits inside its adapter; without expire_on_commit=False every
# attribute read after that commit would need another (implicit, async) query.
async_session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def get_async_session() -> AsyncIterator[AsyncSession]:
    session = async_session_maker()
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
        logger.warning("Discarding a broken database connection: %r", exc)
        await session.invalidate()


SessionDep = Annotated[AsyncSession, Depends(get_async_session)]
