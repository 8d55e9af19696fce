"""The test database: migrated with the project's own migrations, reused while they are unchanged.

Creating and migrating the database costs a run Alembic's import and every
migration, more than a test module of its own. A database that an earlier run
migrated from the very same migration files only needs emptying: its comment
holds their fingerprint, written once the migrations have succeeded.
"""

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import URL, Connection, make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from app.core.config import settings
from app.db.base import Base
from app.jobs.schema import QUEUE_TABLES

if TYPE_CHECKING:
    from alembic.config import Config

# Set by conftest.py when it is not set already.
TEST_DATABASE_URL = make_url(str(settings.TEST_DATABASE_URL))
MIGRATIONS = Path(__file__).resolve().parents[1] / "alembic_migrations"
DATABASE_COMMENT = text(
    "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :name"
)


def migrations_fingerprint() -> str:
    """A digest of every migration and of the environment that runs them."""
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS.rglob("*.py")):
        digest.update(path.relative_to(MIGRATIONS).as_posix().encode())
        digest.update(path.read_bytes())
    return f"migrations sha256:{digest.hexdigest()}"


async def prepare_database(url: URL = TEST_DATABASE_URL) -> bool:
    """Leave the database at `url` empty and at the migrations' head; True if it was reused.

    Whatever an interrupted run committed is emptied out either way.
    """
    fingerprint = migrations_fingerprint()
    admin = create_async_engine(
        url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    async with admin.connect() as connection:
        comment = await connection.scalar(DATABASE_COMMENT, {"name": url.database})
        name = connection.dialect.identifier_preparer.quote(url.database or "")
        reused: bool = comment == fingerprint
        if not reused:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            await connection.execute(text(f"CREATE DATABASE {name}"))
    engine = create_async_engine(url, poolclass=NullPool)
    async with engine.begin() as connection:
        if reused:
            await empty_tables(connection)
        else:
            await connection.run_sync(upgrade_to_head)
            await connection.execute(text(f"COMMENT ON DATABASE {name} IS '{fingerprint}'"))
    await engine.dispose()
    await admin.dispose()
    return reused


async def empty_tables(connection: AsyncConnection) -> None:
    """Delete every row the models' tables and the job queue hold, in one statement."""
    quote = connection.dialect.identifier_preparer
    names = ", ".join(
        [quote.format_table(table) for table in Base.metadata.sorted_tables]
        + [quote.quote(name) for name in sorted(QUEUE_TABLES)]
    )
    await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


def alembic_config(connection: Connection) -> "Config":
    """Alembic on `connection`: migrations run inside the caller's transaction and event loop."""
    # Imported when needed: a run on a reused database never pays for Alembic.
    from alembic.config import Config

    config = Config("alembic.ini")
    config.attributes["connection"] = connection
    config.attributes["configure_logger"] = False
    return config


def upgrade_to_head(connection: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
