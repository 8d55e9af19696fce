"""`python -m commands.create_superuser`."""

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi_users.exceptions import UserAlreadyExists
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.core import security
from app.core.config import Settings, settings
from app.db.session import Database
from commands import create_superuser as command
from tests.conftest import sessions_in
from tests.factories import DEFAULT_PASSWORD, cheap_password_helper, create_user


@pytest.fixture
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's cheap Argon2 parameters for the command, whose flows are under test.

    Swapped for the service's own helper, whose production cost test_passwords.py
    checks: a hash by the cheap one below shows the command uses the service's.
    """
    monkeypatch.setattr(security, "password_helper", cheap_password_helper)


@pytest.mark.usefixtures("cheap_hashing")
async def test_creates_an_active_verified_superuser(session: AsyncSession) -> None:
    user = await command.create_superuser(session, "root@example.com", DEFAULT_PASSWORD)

    assert (user.is_superuser, user.is_active, user.is_verified) == (True, True, True)
    assert await cheap_password_helper.verify_and_update_async(
        DEFAULT_PASSWORD, user.hashed_password
    ) == (True, None)


@pytest.mark.usefixtures("cheap_hashing")
async def test_refuses_an_existing_email(session: AsyncSession) -> None:
    existing = await create_user(session)

    with pytest.raises(UserAlreadyExists):
        await command.create_superuser(session, existing.email, DEFAULT_PASSWORD)


@pytest.fixture
def command_session(
    engine: AsyncEngine, connection: AsyncConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make `main` work in the test's transaction instead of opening the database."""

    @asynccontextmanager
    async def test_database(settings: Settings) -> AsyncIterator[Database]:
        yield Database(engine, sessions_in(connection))

    monkeypatch.setattr(command, "database_for_command", test_database)


@pytest.mark.usefixtures("command_session")
@pytest.mark.parametrize(
    ("email", "password", "error"),
    [
        ("root@example.com", "short", "Password refused: Password must be at least 8"),
        ("not-an-email", DEFAULT_PASSWORD, "Invalid input: value is not a valid email address"),
    ],
)
async def test_main_explains_refusals(
    email: str, password: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await command.main(email, password) == 1
    assert error in capsys.readouterr().err


@pytest.mark.usefixtures("command_session", "cheap_hashing")
async def test_main_reports_the_new_superuser(capsys: pytest.CaptureFixture[str]) -> None:
    assert await command.main("root@example.com", DEFAULT_PASSWORD) == 0
    assert "Superuser root@example.com created" in capsys.readouterr().out


def test_its_imports_map_every_model() -> None:
    """In a process of its own, where only the command's imports ran (not the app's)."""
    finished = subprocess.run(
        [
            sys.executable,
            "-c",
            "import commands.create_superuser; "
            "from sqlalchemy.orm import configure_mappers; configure_mappers()",
        ],
        env={**os.environ, "TEST_DATABASE_URL": str(settings.TEST_DATABASE_URL)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr
