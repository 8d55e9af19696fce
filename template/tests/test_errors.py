"""Database failures: a server that is gone, going, starting, full or refusing the
service's login (a wrong database name, role or password) answers 503.

The real faults (a stopped server, a restart mid-request, an exhausted pool)
are exercised by the template's own resilience tests against a real server;
these pin down which errors count as "unavailable" and which stay bugs (500).
"""

from collections.abc import Callable

import pytest
from asyncpg.exceptions import (  # type: ignore[import-untyped]  # ships no types
    AdminShutdownError,
    CannotConnectNowError,
    ConnectionDoesNotExistError,
    InvalidPasswordError,
    TooManyConnectionsError,
    UniqueViolationError,
)
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import get_async_session

CREDENTIALS = {"username": "someone@example.com", "password": "correct-Horse-battery-9"}


def failing_session(error: Exception) -> Callable[[], AsyncSession]:
    def session() -> AsyncSession:
        raise error

    return session


@pytest.mark.parametrize(
    "error",
    [
        # Raised as is by asyncpg while connecting.
        CannotConnectNowError("the database system is starting up"),
        CannotConnectNowError("the database system is shutting down"),
        TooManyConnectionsError("sorry, too many clients already"),
        # A server that checks passwords refusing DATABASE_URL's (the tests' server may
        # trust every password: test_wrong_database_url_is_503 proves the other refusals).
        InvalidPasswordError('password authentication failed for user "app"'),
        # Wrapped by SQLAlchemy when the server drops a connection in use.
        DBAPIError("SELECT 1", None, AdminShutdownError("terminating connection")),
        DBAPIError(
            "SELECT 1",
            None,
            ConnectionDoesNotExistError("connection was closed"),
            connection_invalidated=True,
        ),
    ],
    ids=[
        "starting-up",
        "shutting-down",
        "too-many-clients",
        "wrong-password",
        "admin-shutdown",
        "dropped",
    ],
)
async def test_unavailable_database_is_503(
    client: AsyncClient, app_under_test: FastAPI, error: Exception
) -> None:
    app_under_test.dependency_overrides[get_async_session] = failing_session(error)

    response = await client.post("/api/auth/login", data=CREDENTIALS)

    assert response.status_code == 503
    assert response.json() == {"detail": "Database unavailable, try again shortly"}
    assert response.headers["Retry-After"] == "5"


@pytest.mark.usefixtures("unreachable_database")
async def test_unreachable_database_is_503(client: AsyncClient) -> None:
    # asyncpg's own socket error (connection refused), raised while SQLAlchemy connects.
    response = await client.post("/api/auth/login", data=CREDENTIALS)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


async def test_wrong_database_url_is_503(client: AsyncClient, wrong_database_url: str) -> None:
    """Like a refused connection: no request can succeed until an operator fixes the URL."""
    response = await client.post("/api/auth/login", data=CREDENTIALS)

    assert response.status_code == 503, wrong_database_url
    assert response.json() == {"detail": "Database unavailable, try again shortly"}
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    "error", [TimeoutError("the app's own"), ConnectionRefusedError("some other service")]
)
async def test_other_socket_errors_stay_errors(
    client: AsyncClient, app_under_test: FastAPI, error: OSError
) -> None:
    """A timeout or refusal of the app's own I/O is a bug to see, not a database outage."""
    app_under_test.dependency_overrides[get_async_session] = failing_session(error)

    with pytest.raises(type(error)):
        await client.post("/api/auth/login", data=CREDENTIALS)


async def test_other_database_errors_stay_errors(
    client: AsyncClient, app_under_test: FastAPI
) -> None:
    duplicate = UniqueViolationError("duplicate key value violates unique constraint")
    app_under_test.dependency_overrides[get_async_session] = failing_session(
        DBAPIError("INSERT", None, duplicate)
    )

    with pytest.raises(DBAPIError):
        await client.post("/api/auth/login", data=CREDENTIALS)
