"""Fixtures: one empty, migrated database per run, one rolled-back transaction per test.

Every test runs inside a transaction that is rolled back at its end, so tests
never see each other's rows and no cleanup code is needed. The test's `session`
and each request's own session (one per request, as in production) work inside
that transaction: their commits (fastapi-users commits inside its adapter) only
release a SAVEPOINT. A request sees what the test flushed; after a request, an
object the test holds is as the test left it until `await session.refresh(obj)`.
"""

from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from app.api import login_limit
from app.api.login_limit import FailedLoginLimiter
from app.core import email, security
from app.core.config import settings
from app.db import session as app_session
from app.db.models.user import User
from app.db.session import get_async_session
from app.main import app
from tests.clients import log_in
from tests.database import TEST_DATABASE_URL, prepare_database
from tests.factories import DEFAULT_PASSWORD, cheap_password_helper, create_user
from tests.outbox import Outbox


@pytest.fixture(scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    await prepare_database()
    # One pooled connection, reused by every test: connecting costs more than most tests.
    engine = create_async_engine(TEST_DATABASE_URL, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


def sessions_in(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions inside the test's transaction: their commits only release a SAVEPOINT."""
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    async with sessions_in(connection)() as session:
        yield session


def make_client(app: FastAPI) -> AsyncClient:
    # https: the auth cookie is Secure, and httpx only sends it back over https.
    return AsyncClient(transport=ASGITransport(app=app), base_url="https://test")


@pytest.fixture
def login_limiter() -> FailedLoginLimiter:
    """The configured failed-login limits, counting this test's failures only."""
    return FailedLoginLimiter(
        "async+memory://", settings.LOGIN_FAILURES_PER_EMAIL, settings.LOGIN_FAILURES_PER_IP
    )


@pytest.fixture
def app_under_test(
    connection: AsyncConnection, login_limiter: FailedLoginLimiter, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FastAPI]:
    """The app, its requests inside the test's transaction, with a cheap password hasher.

    What the app's dependencies return is swapped where they read it, not with
    `app.dependency_overrides`: while any override is set, FastAPI analyses every
    dependency of every request again, a quarter of the time of the tests that
    start no process. A test that overrides one anyway has it cleared at the end.
    """
    monkeypatch.setattr(app_session, "async_session_maker", sessions_in(connection))
    monkeypatch.setattr(security, "password_helper", cheap_password_helper)
    monkeypatch.setattr(login_limit, "failed_login_limiter", login_limiter)
    yield app
    app.dependency_overrides.clear()


@pytest.fixture
async def unreachable_database(app_under_test: FastAPI) -> AsyncIterator[None]:
    """Requests connect to a server that refuses: port 9 (discard), where nothing listens."""
    unreachable = create_async_engine(
        "postgresql+asyncpg://nobody@127.0.0.1:9/none", poolclass=NullPool
    )

    async def session_without_database() -> AsyncIterator[AsyncSession]:
        async with AsyncSession(unreachable) as session:
            yield session

    app_under_test.dependency_overrides[get_async_session] = session_without_database
    yield
    await unreachable.dispose()


@pytest.fixture
async def client(app_under_test: FastAPI) -> AsyncIterator[AsyncClient]:
    """An anonymous client."""
    async with make_client(app_under_test) as client:
        yield client


@pytest.fixture
async def user(session: AsyncSession) -> User:
    return await create_user(session)


@pytest.fixture
async def superuser(session: AsyncSession) -> User:
    return await create_user(session, is_superuser=True)


@pytest.fixture
async def user_client(client: AsyncClient, user: User) -> AsyncClient:
    """`client`, logged in as `user`."""
    await log_in(client, user.email, DEFAULT_PASSWORD)
    return client


@pytest.fixture
async def superuser_client(app_under_test: FastAPI, superuser: User) -> AsyncIterator[AsyncClient]:
    """A second client, logged in as `superuser`, beside `client`."""
    async with make_client(app_under_test) as client:
        await log_in(client, superuser.email, DEFAULT_PASSWORD)
        yield client


@pytest.fixture(autouse=True)
def outbox(monkeypatch: pytest.MonkeyPatch) -> Outbox:
    outbox = Outbox()
    monkeypatch.setattr(email, "send_email", outbox.deliver)
    return outbox
