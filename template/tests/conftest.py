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
from sqlalchemy import URL, delete
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from starlette.datastructures import State

from app.api.login_limit import FailedLoginLimiter
from app.core import email, security
from app.core.config import settings
from app.db.models.user import User
from app.db.session import Database, open_database
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


def use_state(monkeypatch: pytest.MonkeyPatch, **state: object) -> None:
    """Give `app`, for the test, what its lifespan would have opened: `state`."""
    current = {name: app.state[name] for name in app.state}
    monkeypatch.setattr(app, "state", State({**current, **state}))


@pytest.fixture
def app_under_test(
    engine: AsyncEngine,
    connection: AsyncConnection,
    login_limiter: FailedLoginLimiter,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FastAPI]:
    """The app, its requests inside the test's transaction, with a cheap password hasher.

    The app's database and login limiter are the test's: the lifespan, which would
    open the real ones, does not run under httpx's ASGI transport. Dependencies are
    not swapped with `app.dependency_overrides`: while any override is set, FastAPI
    analyses every dependency of every request again, a quarter of the time of the
    tests that start no process. A test that overrides one anyway has it cleared.
    """
    database = Database(engine, sessions_in(connection))
    use_state(monkeypatch, database=database, login_limiter=login_limiter)
    monkeypatch.setattr(security, "password_helper", cheap_password_helper)
    yield app
    app.dependency_overrides.clear()


@pytest.fixture
async def app_database(engine: AsyncEngine) -> AsyncIterator[Database]:
    """The database as the app opens it: its own engine and sessions, which commit for
    real, outside the test's transaction. Closed at the end, on the test's event loop.

    `engine` (the tests' engine) is here for the migrated database it brings.
    """
    database = open_database(settings)
    yield database
    await database.engine.dispose()


@pytest.fixture
async def committed_user(app_database: Database) -> AsyncIterator[User]:
    """A user committed for real, seen by the app's own sessions; deleted afterwards."""
    async with app_database.sessions() as session:
        user = await create_user(session)
        await session.commit()
    yield user
    async with app_database.sessions() as session:
        await session.execute(delete(User).where(User.id == user.id))
        await session.commit()


@pytest.fixture
def app_on_its_database(
    app_database: Database, login_limiter: FailedLoginLimiter, monkeypatch: pytest.MonkeyPatch
) -> FastAPI:
    """The app as it serves: each request on a connection of its own pool, committing."""
    use_state(monkeypatch, database=app_database, login_limiter=login_limiter)
    monkeypatch.setattr(security, "password_helper", cheap_password_helper)
    return app


@pytest.fixture
async def unreachable_database(app_under_test: FastAPI) -> AsyncIterator[None]:
    """Requests connect to a server that refuses: port 9 (discard), where nothing listens."""
    unreachable = create_async_engine(
        "postgresql+asyncpg://nobody@127.0.0.1:9/none", poolclass=NullPool
    )
    app_under_test.state.database = Database.on(unreachable)  # a state of this test's own
    yield
    await unreachable.dispose()


# DATABASE_URL's mistakes that the real server refuses at login: a database and a role
# that do not exist. A wrong password it may not refuse: the server may trust every one.
WRONG_DATABASE_URLS: dict[str, URL] = {
    "no-such-database": TEST_DATABASE_URL.set(database="no_such_database"),
    "no-such-role": TEST_DATABASE_URL.set(username="no_such_role"),
}


@pytest.fixture(params=sorted(WRONG_DATABASE_URLS))
async def wrong_database_url(
    request: pytest.FixtureRequest, app_under_test: FastAPI
) -> AsyncIterator[str]:
    """Requests log in with a DATABASE_URL the server refuses; the mistake's name."""
    refused = create_async_engine(WRONG_DATABASE_URLS[request.param], poolclass=NullPool)
    app_under_test.state.database = Database.on(refused)  # a state of this test's own
    yield request.param
    await refused.dispose()


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
def outbox(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Outbox:
    """Mail goes here. Its jobs run in the test's transaction, taken when first read:
    tests that send no mail open no connection for it.
    """
    outbox = Outbox(lambda: request.getfixturevalue("connection"))
    monkeypatch.setattr(email, "send_email", outbox.deliver)
    return outbox
