"""Failed logins are limited per e-mail address and per client IP (app/api/login_limit.py)."""

import asyncio
import hashlib
from typing import NoReturn, cast

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.errors import StorageError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api import login_limit
from app.api.login_limit import (
    LIMIT_STORE_UNAVAILABLE,
    TOO_MANY_FAILED_LOGINS,
    FailedLoginLimiter,
    TooManyFailedLoginsError,
    warn_if_store_is_down,
)
from app.core.config import settings
from app.db.models.user import User
from app.main import app
from tests.clients import LOGIN_URL, log_in
from tests.factories import DEFAULT_PASSWORD, create_user

PER_EMAIL = parse(settings.LOGIN_FAILURES_PER_EMAIL)
WINDOW_SECONDS = PER_EMAIL.get_expiry()
KEYS = {"email": "target@example.com", "ip": "192.0.2.1"}


async def log_in_with(client: AsyncClient, email: str, password: str) -> Response:
    return await client.post(LOGIN_URL, data={"username": email, "password": password})


def assert_limited(response: Response, window_seconds: int) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= window_seconds
    assert response.json() == {
        "detail": {
            "code": TOO_MANY_FAILED_LOGINS,
            "reason": f"Too many failed logins: try again in {retry_after} seconds",
        }
    }


class TestPerEmail:
    @pytest.mark.parametrize("registered", [True, False], ids=["registered", "unknown"])
    async def test_failures_up_to_the_limit_then_429_even_with_the_right_password(
        self, client: AsyncClient, user: User, registered: bool
    ) -> None:
        email = user.email if registered else "nobody@example.com"
        for attempt in range(PER_EMAIL.amount):
            # Any capitalisation counts for the same address.
            typed = email.upper() if attempt % 2 else email
            response = await log_in_with(client, typed, "a wrong passphrase")
            assert response.status_code == 400, attempt

        # Registered or not, the same answer: the limit tells nothing about accounts.
        assert_limited(await log_in_with(client, email, DEFAULT_PASSWORD), WINDOW_SECONDS)

    async def test_other_addresses_are_not_held_up(
        self, client: AsyncClient, user: User, session: AsyncSession
    ) -> None:
        other = await create_user(session)
        for _ in range(PER_EMAIL.amount):
            await log_in_with(client, user.email, "a wrong passphrase")

        await log_in(client, other.email, DEFAULT_PASSWORD)

    async def test_successful_logins_do_not_count(self, client: AsyncClient, user: User) -> None:
        for _ in range(PER_EMAIL.amount + 1):
            await log_in(client, user.email, DEFAULT_PASSWORD)

    async def test_the_store_holds_a_keyed_hash_of_the_address_never_the_address(
        self, client: AsyncClient, user: User, login_limiter: FailedLoginLimiter
    ) -> None:
        await log_in_with(client, user.email.upper(), "a wrong passphrase")

        # The memory store's windows, by key; Redis keeps the same keys.
        keys = " ".join(cast(MemoryStorage, login_limiter.storage).events)
        assert f"/email/{login_limit.email_key(user.email)}/" in keys
        assert user.email.lower() not in keys.lower()
        # Keyed: not a hash anyone could compute from a list of addresses.
        assert hashlib.sha256(user.email.lower().encode()).hexdigest() not in keys


class TestPerClientIp:
    @pytest.fixture
    def login_limiter(self) -> FailedLoginLimiter:
        """Three failures per client: the limit, not its configured size, is under test."""
        return FailedLoginLimiter("async+memory://", "100/minute", "3/minute")

    async def test_failures_across_addresses_are_limited_per_client(
        self, client: AsyncClient, user: User, app_under_test: FastAPI
    ) -> None:
        for number in range(3):
            response = await log_in_with(client, f"guess{number}@example.com", DEFAULT_PASSWORD)
            assert response.status_code == 400

        assert_limited(await log_in_with(client, user.email, DEFAULT_PASSWORD), 60)
        # Another client is not held up.
        other_client = ASGITransport(app=app_under_test, client=("192.0.2.7", 40000))
        async with AsyncClient(transport=other_client, base_url="https://test") as other:
            await log_in(other, user.email, DEFAULT_PASSWORD)


class TestConcurrentAttempts:
    async def test_attempts_in_progress_hold_their_place(self) -> None:
        limiter = FailedLoginLimiter("async+memory://", "3/minute", "100/minute")

        # Three guesses in flight at once: a fourth is refused before any has failed.
        await asyncio.gather(*(limiter.admit(KEYS) for _ in range(3)))
        with pytest.raises(TooManyFailedLoginsError) as refused:
            await limiter.admit(KEYS)
        assert refused.value.retry_after == 1  # when one of them ends

        # One turns out right: its place is free again.
        limiter.release(KEYS)
        await limiter.admit(KEYS)

        # All three fail: the window is full until the oldest failure leaves it.
        for _ in range(3):
            await limiter.record_failure(KEYS)
            limiter.release(KEYS)
        with pytest.raises(TooManyFailedLoginsError) as refused:
            await limiter.admit(KEYS)
        assert 0 < refused.value.retry_after <= 60


class TestUnreachableStore:
    """A shared store (Redis) that does not answer: logins fail closed, nothing else does."""

    @pytest.fixture
    def login_limiter(self, monkeypatch: pytest.MonkeyPatch) -> FailedLoginLimiter:
        limiter = FailedLoginLimiter("async+memory://", "3/minute", "100/minute")

        async def refused(*args: object, **kwargs: object) -> NoReturn:
            # What the limits library raises for Redis's refused connection.
            raise StorageError(ConnectionRefusedError(111, "Connection refused"))

        for method in ("acquire_entry", "get_moving_window", "check"):
            monkeypatch.setattr(limiter.storage, method, refused)
        return limiter

    async def test_logins_answer_503_naming_the_setting_in_the_log(
        self, client: AsyncClient, user: User, caplog: pytest.LogCaptureFixture
    ) -> None:
        response = await log_in_with(client, user.email, DEFAULT_PASSWORD)

        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "5"
        assert response.json() == {
            "detail": {
                "code": LIMIT_STORE_UNAVAILABLE,
                "reason": "Logins are unavailable for a moment, try again shortly",
            }
        }
        [warning] = [r for r in caplog.records if "LOGIN_LIMIT_STORAGE_URI" in r.getMessage()]
        assert warning.levelname == "WARNING"
        assert "does not answer" in warning.getMessage()
        assert "Connection refused" in warning.getMessage()

    async def test_other_endpoints_are_not_affected(self, client: AsyncClient) -> None:
        body = {"email": "newcomer@example.com", "password": DEFAULT_PASSWORD}
        assert (await client.post("/api/auth/register", json=body)).status_code == 201
        assert (await client.get("/api/health/live")).status_code == 200

    async def test_start_up_names_the_setting_and_goes_on(
        self, login_limiter: FailedLoginLimiter, caplog: pytest.LogCaptureFixture
    ) -> None:
        await warn_if_store_is_down(login_limiter)

        assert "LOGIN_LIMIT_STORAGE_URI does not answer" in caplog.text

    async def test_start_up_does_not_wait_for_a_store_that_hangs(
        self, login_limiter: FailedLoginLimiter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A store that accepts the connection and never answers is one that does not answer."""

        async def hangs() -> bool:
            await asyncio.Event().wait()
            return True

        monkeypatch.setattr(login_limiter.storage, "check", hangs)
        monkeypatch.setattr(login_limit, "STORE_RETRY_SECONDS", 0.01)

        # The guard turns a hang into a failure; the check gives up long before.
        assert not await asyncio.wait_for(login_limiter.store_answers(), timeout=60)


async def test_start_up_is_quiet_when_the_store_answers(caplog: pytest.LogCaptureFixture) -> None:
    await warn_if_store_is_down(app.state.login_limiter)

    assert "LOGIN_LIMIT_STORAGE_URI" not in caplog.text


def test_the_login_route_documents_its_429(app_under_test: FastAPI) -> None:
    responses = app_under_test.openapi()["paths"]["/api/auth/login"]["post"]["responses"]

    assert "Retry-After" in responses["429"]["headers"]


def test_the_limiter_is_wired_to_the_settings() -> None:
    assert app.state.login_limiter.limits == {
        "email": parse(settings.LOGIN_FAILURES_PER_EMAIL),
        "ip": parse(settings.LOGIN_FAILURES_PER_IP),
    }
