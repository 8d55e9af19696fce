"""Logging: request ids, one access line per request, JSON in production, no secrets."""

import json
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from starlette.types import Receive, Scope, Send

from app.api.request_log import RequestLogMiddleware, server_error
from app.core.config import settings
from app.core.logging import TEXT_FORMAT, JsonFormatter
from app.db.models.user import User
from app.main import app
from tests.clients import log_in_tokens, refresh, tokens_in
from tests.factories import DEFAULT_PASSWORD
from tests.outbox import Outbox, token_in
from tests.ports import free_port

LIVE_URL = "/api/health/live"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "app.access"]


def request_id_of(record: logging.LogRecord) -> object:
    """The id app/core/logging.py puts on every record (not a declared attribute)."""
    return record.__dict__["request_id"]


class TestRequestId:
    async def test_generated_when_absent(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO):
            response = await client.get(LIVE_URL)

        generated = response.headers["x-request-id"]
        assert len(generated) == 32
        assert int(generated, 16) >= 0
        [line] = access_lines(caplog)
        assert request_id_of(line) == generated

    async def test_callers_id_is_kept(self, client: AsyncClient) -> None:
        response = await client.get(LIVE_URL, headers={"X-Request-ID": "edge-7f3a:1.2_b"})

        assert response.headers["x-request-id"] == "edge-7f3a:1.2_b"

    @pytest.mark.parametrize(
        "offered", ["", "x" * 129, "two words", "line\u2028break", "<script>", "a/b"]
    )
    async def test_unsafe_or_overlong_id_is_replaced(
        self, client: AsyncClient, offered: str
    ) -> None:
        response = await client.get(LIVE_URL, headers={b"X-Request-ID": offered.encode()})

        assert response.headers["x-request-id"] != offered
        assert len(response.headers["x-request-id"]) == 32

    async def test_every_line_of_a_request_carries_its_id(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def inner(scope: Scope, receive: Receive, send: Send) -> None:
            logging.getLogger("app.some.module").warning("inside the request")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        transport = ASGITransport(app=RequestLogMiddleware(inner))
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            with caplog.at_level(logging.INFO):
                await client.get("/", headers={"X-Request-ID": "req-1"})
                await client.get("/", headers={"X-Request-ID": "req-2"})
            logging.getLogger("app.some.module").warning("outside any request")

        app_records = [record for record in caplog.records if record.name.startswith("app.")]
        assert [(record.name, request_id_of(record)) for record in app_records] == [
            ("app.some.module", "req-1"),
            ("app.access", "req-1"),
            ("app.some.module", "req-2"),
            ("app.access", "req-2"),
            ("app.some.module", "-"),
        ]

    async def test_unhandled_error_is_a_500_with_the_id_logged_twice(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """As app.main wires it: the access line, then the traceback, both with the id."""
        failing = FastAPI()
        failing.state.settings = settings
        failing.add_exception_handler(Exception, server_error)
        failing.add_middleware(RequestLogMiddleware)

        @failing.get("/boom")
        async def boom() -> None:
            raise RuntimeError("boom")

        transport = ASGITransport(app=failing, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            with caplog.at_level(logging.INFO):
                response = await client.get("/boom", headers={"X-Request-ID": "req-500"})
                logging.getLogger("uvicorn.error").exception("as the server logs it")

        assert response.status_code == 500
        assert response.json() == {"detail": "Internal Server Error"}
        assert response.headers["x-request-id"] == "req-500"
        [line] = access_lines(caplog)
        assert line.__dict__["status"] == 500
        assert request_id_of(caplog.records[-1]) == "req-500"
        assert app.exception_handlers[Exception] is server_error


class TestAccessLog:
    async def test_one_line_with_method_path_status_and_duration(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO):
            await client.get(f"{LIVE_URL}?token=secret-in-query")

        [line] = access_lines(caplog)
        entry = json.loads(JsonFormatter().format(line))
        assert entry["method"] == "GET"
        assert entry["path"] == LIVE_URL
        assert entry["status"] == 200
        assert entry["duration_ms"] >= 0
        assert entry["request_id"] == request_id_of(line)
        assert line.getMessage().startswith(f'"GET {LIVE_URL}" 200 ')
        assert "secret-in-query" not in every_rendering([line])

    async def test_refused_body_is_logged_with_its_status(
        self, client: AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO):
            response = await client.post(
                "/api/auth/register", content=b"x" * (settings.MAX_REQUEST_BODY_BYTES + 1)
            )

        assert response.status_code == 413
        assert "x-request-id" in response.headers
        [line] = access_lines(caplog)
        assert line.__dict__["status"] == 413


class TestFormat:
    def test_json_in_production_text_elsewhere(self) -> None:
        production = settings.model_copy(update={"ENVIRONMENT": "production"})
        development = settings.model_copy(update={"ENVIRONMENT": "development"})
        chosen = development.model_copy(update={"LOG_FORMAT": "json"})

        assert production.log_format == "json"
        assert development.log_format == "text"
        assert chosen.log_format == "json"

    def test_json_lines_hold_the_exception(self) -> None:
        try:
            raise ValueError("bad value")
        except ValueError:
            record = logging.getLogger("app").makeRecord(
                "app", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info()
            )

        entry = json.loads(JsonFormatter().format(record))

        assert entry["message"] == "failed here"
        assert entry["level"] == "ERROR"
        assert "ValueError: bad value" in entry["exception"]


def wait_until_live(base_url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while server.poll() is None and time.monotonic() < deadline:
        try:
            httpx.get(base_url + LIVE_URL).raise_for_status()
            return
        except httpx.TransportError:
            time.sleep(0.02)
    raise AssertionError("uvicorn did not start")


def test_served_app_writes_json_lines_and_one_access_line_per_request() -> None:
    """Served as the image serves, with two workers: every line of every process in our
    format, the supervisor's included; the access log ours.
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
        # Never connected to: the liveness check does no I/O.
        "DATABASE_URL": str(settings.TEST_DATABASE_URL),
        # Nothing polls its readiness: it may stop at once on SIGTERM.
        "SHUTDOWN_DELAY_SECONDS": "0",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
    }
    with subprocess.Popen(
        [sys.executable, "-m", "commands.serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            wait_until_live(base_url, server)
            response = httpx.get(f"{base_url}{LIVE_URL}?token=abc", headers={"X-Request-ID": "c-1"})
        finally:
            server.terminate()
            stdout, stderr = server.communicate(timeout=30)

    assert response.headers["x-request-id"] == "c-1"
    output = stdout + stderr
    mentions = [line for line in output.splitlines() if LIVE_URL in line]
    entries = [json.loads(line) for line in mentions]  # Our JSON lines, not uvicorn's access log.
    assert {entry["logger"] for entry in entries} == {"app.access"}
    [access] = [entry for entry in entries if entry["request_id"] == "c-1"]
    assert (access["method"], access["path"], access["status"]) == ("GET", LIVE_URL, 200)
    assert '"logger": "uvicorn.error", "request_id": "-", "message": "Shutting down"' in stderr
    assert "token=abc" not in output
    messages = [json.loads(line)["message"] for line in output.splitlines() if line.strip()]
    assert any(message.startswith("Stopping parent process") for message in messages)


def test_alembics_set_up_stays_out_of_the_log() -> None:
    """The ready check's first run imports Alembic, whose plugins announce themselves
    at INFO: lines about Alembic's set-up in the log of whichever request came first.
    """
    assert not logging.getLogger("alembic.runtime.plugins").isEnabledFor(logging.INFO)


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    return caplog


def every_rendering(records: list[logging.LogRecord]) -> str:
    """Each record as the text and the JSON formats would write it, extras included."""
    text, as_json = logging.Formatter(TEXT_FORMAT), JsonFormatter()
    return "\n".join(f"{text.format(r)}\n{as_json.format(r)}" for r in records)


async def test_passwords_tokens_and_secrets_never_reach_the_log(
    client: AsyncClient, user: User, outbox: Outbox, captured: pytest.LogCaptureFixture
) -> None:
    new_password, wrong_password, reset_password = (
        "a registered passphrase 1",
        "a wrong passphrase 2",
        "a reset passphrase 3",
    )
    register = await client.post(
        "/api/auth/register", json={"email": "new.user@example.com", "password": new_password}
    )
    assert register.status_code == 201
    failed = await client.post(
        "/api/auth/login", data={"username": user.email, "password": wrong_password}
    )
    assert failed.status_code == 400
    first = await log_in_tokens(client, user.email, DEFAULT_PASSWORD)
    assert (await client.get("/api/users/me")).status_code == 200
    rotated = await refresh(client, first.refresh_token)
    assert rotated.is_success, rotated.text
    second = tokens_in(rotated)
    assert (await client.get("/api/users/me")).status_code == 200

    await client.post("/api/auth/forgot-password", json={"email": user.email})
    reset_token = token_in((await outbox.messages())[-1])
    reset = await client.post(
        "/api/auth/reset-password", json={"token": reset_token, "password": reset_password}
    )
    assert reset.status_code == 200
    await client.post("/api/auth/request-verify-token", json={"email": "new.user@example.com"})
    verify_token = token_in((await outbox.messages())[-1])
    verified = await client.post("/api/auth/verify", json={"token": verify_token})
    assert verified.status_code == 200

    logged = every_rendering(captured.records)
    assert len(access_lines(captured)) >= 8
    secrets = [
        new_password,
        wrong_password,
        DEFAULT_PASSWORD,
        reset_password,
        reset_token,
        verify_token,
        # Access and refresh tokens of the login, before and after the refresh rotated them.
        first.access_token,
        first.refresh_token,
        second.access_token,
        second.refresh_token,
        settings.ACCESS_SECRET_KEY.get_secret_value(),
        settings.RESET_PASSWORD_SECRET_KEY.get_secret_value(),
        settings.VERIFICATION_SECRET_KEY.get_secret_value(),
    ]
    assert len(secrets) == 13
    for secret in secrets:
        assert secret not in logged
