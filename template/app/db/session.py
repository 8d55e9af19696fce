"""The engine, the session factory and the request-scoped session dependency."""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import settings

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
    async with async_session_maker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_async_session)]
