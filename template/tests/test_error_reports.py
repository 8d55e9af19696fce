"""Error reports: what reaches a Sentry DSN, received by a local HTTP endpoint.

The endpoint stands in for Sentry: the test asserts what the SDK sent it. The
500 is forced by a dependency override in the test, never by shipped code.
"""

import gzip
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.api.request_log import REQUEST_ID_HEADER
from app.core.config import settings
from app.db.session import get_async_session
from app.observability.error_reports import start_error_reports
from tests.clients import LOGIN_URL

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
