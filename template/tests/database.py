"""The test database: created empty once per run, migrated with the project's own migrations."""

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import settings

TEST_DATABASE_URL = make_url(settings.database_url)


async def recreate_database() -> None:
    """Start every run from an empty database, whatever an interrupted run left."""
    admin = create_async_engine(
        TEST_DATABASE_URL.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    async with admin.connect() as connection:
        name = connection.dialect.identifier_preparer.quote(TEST_DATABASE_URL.database or "")
        await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await connection.execute(text(f"CREATE DATABASE {name}"))
    await admin.dispose()


def alembic_config(connection: Connection) -> Config:
    """Alembic on `connection`: migrations run inside the caller's transaction and event loop."""
    config = Config("alembic.ini")
    config.attributes["connection"] = connection
    config.attributes["configure_logger"] = False
    return config


def upgrade_to_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
