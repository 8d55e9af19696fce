"""The migrations build exactly the schema the models describe, and undo it."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.base import Base
from app.jobs.schema import QUEUE_TABLES, described_by_models
from tests.database import alembic_config


def differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"include_object": described_by_models})
    return list(compare_metadata(context, Base.metadata))


def downgrade_then_upgrade(connection: Connection) -> tuple[list[str], list[str]]:
    command.downgrade(alembic_config(connection), "base")
    after_downgrade = inspect(connection).get_table_names()
    command.upgrade(alembic_config(connection), "head")
    return after_downgrade, inspect(connection).get_table_names()


async def test_models_and_migrations_agree(connection: AsyncConnection) -> None:
    assert await connection.run_sync(differences) == []


async def test_downgrade_removes_everything_and_upgrade_restores_it(
    connection: AsyncConnection,
) -> None:
    # DDL is transactional in PostgreSQL: the test's rollback undoes all of this.
    after_downgrade, after_upgrade = await connection.run_sync(downgrade_then_upgrade)

    assert after_downgrade == ["alembic_version"]
    assert set(after_upgrade) == {"alembic_version", *Base.metadata.tables, *QUEUE_TABLES}
