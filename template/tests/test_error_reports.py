"""Error reports: what reaches a Sentry DSN, received by a local HTTP endpoint.

The endpoint stands in for Sentry: the test asserts what the SDK sent it. The
500s are forced by the test (a dependency override; PostgreSQL refusing the
new user's row), never by shipped code.
"""

import gzip
import json
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.request_log import REQUEST_ID_HEADER
from app.core.config import settings
from app.core.logging import TEXT_FORMAT, JsonFormatter, TextFormatter
from app.db.session import create_engine, get_async_session
from app.observability.error_reports import start_error_reports
from tests.clients import LOGIN_URL
from tests.database import TEST_DATABASE_URL

PASSWORD = "a-password-in-the-form"
TOKEN = "a-bearer-token"
COOKIE = "a-session-cookie"
QUERY_TOKEN = "a-token-in-the-query"


class SentryStandIn(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EnvelopeHandler)
        self.envelopes: list[bytes] = []

    @property
    def dsn(self) -> str:
        return f"http://public-key@127.0.0.1:{self.server_address[1]}/1"

    def events(self) -> list[dict[str, Any]]:
        """The error events of every envelope (an envelope is lines of JSON)."""
        items = [json.loads(line) for body in self.envelopes for line in body.splitlines() if line]
        return [item for item in items if "exception" in item]


class EnvelopeHandler(BaseHTTPRequestHandler):
    server: SentryStandIn

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.envelopes.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sentry() -> Iterator[SentryStandIn]:
    server = SentryStandIn()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    start_error_reports(server.dsn, "test", "test-release", settings.secret_values())
    yield server
    sentry_sdk.init()  # No DSN: the rest of the run reports nothing.
    server.shutdown()
    server.server_close()


@pytest.fixture
async def raw_client(app_under_test: FastAPI) -> AsyncIterator[AsyncClient]:
    """A client that gets the 500 response instead of the app's exception."""
    transport = ASGITransport(app=app_under_test, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="https://test") as client:
        yield client


def fail_with_a_secret() -> None:
    raise RuntimeError(f"bug near {settings.ACCESS_SECRET_KEY.get_secret_value()}")


async def test_a_500_is_reported_with_its_request_id_and_without_secrets(
    sentry: SentryStandIn, app_under_test: FastAPI, raw_client: AsyncClient
) -> None:
    app_under_test.dependency_overrides[get_async_session] = fail_with_a_secret
    response = await raw_client.post(
        LOGIN_URL,
        params={"token": QUERY_TOKEN},
        data={"username": "someone@example.com", "password": PASSWORD},
        headers={"Authorization": f"Bearer {TOKEN}", "Cookie": f"session={COOKIE}"},
    )
    assert response.status_code == 500
    sentry_sdk.flush()

    [event] = sentry.events()
    assert event["tags"]["request_id"] == response.headers[REQUEST_ID_HEADER]
    assert event["environment"] == "test"
    assert event["release"] == "test-release"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"
    sent = b"".join(sentry.envelopes).decode()
    for secret in [PASSWORD, TOKEN, COOKIE, QUERY_TOKEN, *settings.secret_values()]:
        assert secret not in sent


@pytest.mark.usefixtures("unreachable_database")
async def test_client_errors_and_an_unreachable_database_are_not_reported(
    sentry: SentryStandIn, raw_client: AsyncClient
) -> None:
    assert (await raw_client.get("/api/users/me")).status_code == 401
    assert (await raw_client.get("/api/no-such-path")).status_code == 404
    response = await raw_client.post(
        LOGIN_URL, data={"username": "someone@example.com", "password": PASSWORD}
    )
    assert response.status_code == 503
    sentry_sdk.flush()

    assert sentry.events() == []


REGISTER_URL = "/api/auth/register"
NEW_EMAIL = "refused.newcomer@example.com"
NEW_PASSWORD = "a new password, refused with its row"
# What PostgreSQL and SQLAlchemy put in a failed INSERT's message: the row and its values.
QUOTED_DATA = [NEW_EMAIL, NEW_PASSWORD, "$argon2id$", "Failing row contains", "parameters:"]


async def refuse_new_users_by_check(session: AsyncSession) -> str:
    await session.execute(
        text("ALTER TABLE users ADD CONSTRAINT refuse_all CHECK (email = '') NOT VALID")
    )
    return "CheckViolationError"


async def refuse_new_users_by_role(session: AsyncSession) -> str:
    """Run the test's transaction as a role that may read and change users, not insert them."""
    await session.execute(text("CREATE ROLE no_inserts_in_tests"))
    await session.execute(
        text("GRANT SELECT, UPDATE ON ALL TABLES IN SCHEMA public TO no_inserts_in_tests")
    )
    await session.execute(text("SET LOCAL ROLE no_inserts_in_tests"))
    return "InsufficientPrivilegeError"


@pytest.mark.parametrize("refuse", [refuse_new_users_by_check, refuse_new_users_by_role])
async def test_a_refused_row_is_reported_and_logged_without_the_data_it_held(
    sentry: SentryStandIn, app_under_test: FastAPI, session: AsyncSession, refuse: Any
) -> None:
    driver_error = await refuse(session)
    transport = ASGITransport(app=app_under_test)
    async with AsyncClient(transport=transport, base_url="https://test") as client:
        with pytest.raises(DBAPIError) as raised:
            await client.post(REGISTER_URL, json={"email": NEW_EMAIL, "password": NEW_PASSWORD})
    sentry_sdk.flush()

    [event] = sentry.events()
    assert event["tags"]["request_id"]
    reported = event["exception"]["values"][-1]
    assert reported["type"] == type(raised.value).__name__
    assert driver_error in reported["value"]
    assert "SQLSTATE" in reported["value"]
    # As uvicorn logs an exception its app raised, in both of the app's formats.
    exc_info = (type(raised.value), raised.value, raised.tb)
    record = logging.getLogRecordFactory()(
        "uvicorn.error", logging.ERROR, __file__, 0, "Exception in ASGI application", (), exc_info
    )
    logged = [JsonFormatter().format(record), TextFormatter(TEXT_FORMAT).format(record)]
    assert all(driver_error in line and "SQLSTATE" in line for line in logged)
    sent = b"".join(sentry.envelopes).decode()
    for data in QUOTED_DATA:
        assert data not in sent
        assert all(data not in line for line in logged)


@pytest.mark.usefixtures("engine")  # the test database exists, whatever ran before
async def test_the_apps_engine_keeps_a_statements_values_out_of_its_errors() -> None:
    """A second guard, for code that formats an exception without app/core/redaction.py."""
    engine = create_engine(TEST_DATABASE_URL.render_as_string(hide_password=False), settings)
    statement = text("SELECT CAST(:value AS integer)")
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as raised:
                await connection.execute(statement, {"value": NEW_EMAIL})
    finally:
        await engine.dispose()

    # SQLAlchemy's own text: the statement, and its parameters unless the engine hides them.
    assert "CAST" in str(raised.value)
    assert "[parameters:" not in str(raised.value)
