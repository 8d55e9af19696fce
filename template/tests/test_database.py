"""The test database is reused while the migrations are the same, and always starts empty."""

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import URL, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from app.db.models.user import User
from tests import database
from tests.database import TEST_DATABASE_URL, prepare_database
from tests.factories import create_user


@pytest.fixture
async def url() -> AsyncIterator[URL]:
    """A database of this test's own beside the suite's, dropped at the end."""
    url = TEST_DATABASE_URL.set(database=f"{TEST_DATABASE_URL.database}_prepare")
    yield url
    admin = create_async_engine(
        url.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    async with admin.connect() as connection:
        await connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    await admin.dispose()


async def count_users(url: URL) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    async with AsyncSession(engine) as session:
        count = await session.scalar(select(func.count()).select_from(User))
    await engine.dispose()
    return count or 0


async def commit_a_user(url: URL) -> None:
    """What an interrupted run may leave: a row committed outside any test's transaction."""
    engine = create_async_engine(url, poolclass=NullPool)
    async with AsyncSession(engine) as session:
        await create_user(session)
        await session.commit()
    await engine.dispose()


async def test_a_database_migrated_from_the_same_files_is_reused_and_emptied(url: URL) -> None:
    assert not await prepare_database(url)
    await commit_a_user(url)

    assert await prepare_database(url)
    assert await count_users(url) == 0


async def test_changed_migrations_make_a_new_database(
    url: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not await prepare_database(url)
    await commit_a_user(url)
    edited = shutil.copytree(database.MIGRATIONS, tmp_path / "alembic_migrations")
    with (edited / "env.py").open("a") as env:
        env.write("# edited\n")
    monkeypatch.setattr(database, "MIGRATIONS", edited)

    assert not await prepare_database(url)
    assert await count_users(url) == 0
    assert await prepare_database(url)
