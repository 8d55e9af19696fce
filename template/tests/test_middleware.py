"""Request size limit and security headers."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from starlette.responses import PlainTextResponse

from app.api.login_limit import FailedLoginLimiter
from app.api.middleware import HSTS, SecurityHeadersMiddleware
from app.core.config import settings
from app.db.models.user import User
from app.db.session import get_async_session
from app.main import create_app
from tests.clients import LOGIN_URL

LIMIT = settings.MAX_REQUEST_BODY_BYTES
# Written out here, not taken from app/api/middleware.py: a header dropped there fails this.
API_SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cross-origin-opener-policy": "same-origin",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}
PRODUCTION_HSTS = "max-age=63072000; includeSubDomains"


def built_with(**changes: Any) -> FastAPI:
    """The app as `create_app` builds it from the suite's settings with `changes`.

    Logging is configured again exactly as the suite's app did (same level and format).
    """
    return create_app(settings.model_copy(update={"LOG_FORMAT": settings.log_format, **changes}))


def assert_api_security_headers(response: Response) -> None:
    assert {name: response.headers.get(name) for name in API_SECURITY_HEADERS} == (
        API_SECURITY_HEADERS
    )


class TestBodySizeLimit:
    async def test_declared_oversized_body_is_413(self, client: AsyncClient) -> None:
        response = await client.post("/api/auth/register", content=b"x" * (LIMIT + 1))

        assert response.status_code == 413
        assert response.json() == {"detail": f"Request body larger than {LIMIT} bytes"}

    async def test_declared_oversized_body_is_refused_before_the_endpoint_runs(
        self, superuser_client: AsyncClient, user: User
    ) -> None:
        """Also where the endpoint reads no body: FastAPI's own `max_body_size` would
        let this deletion happen, then send a 413 in place of its response.
        """
        url = f"/api/users/{user.id}"
        response = await superuser_client.request("DELETE", url, content=b"x" * (LIMIT + 1))

        assert response.status_code == 413
        assert (await superuser_client.get(url)).status_code == 200

    async def test_streamed_oversized_body_is_413(self, client: AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(LIMIT // 65536 + 2):
                yield b"x" * 65536

        response = await client.post(
            "/api/auth/register", content=chunks(), headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 413

    async def test_body_at_the_limit_is_read(self, client: AsyncClient) -> None:
        response = await client.post(
            "/api/auth/register",
            content=b" " * LIMIT,
            headers={"Content-Type": "application/json"},
        )

        assert response.status_code == 422


class TestSecurityHeaders:
    async def test_api_responses_forbid_sniffing_framing_and_referrers(
        self, client: AsyncClient
    ) -> None:
        response = await client.get("/api/health/live")

        assert response.status_code == 200
        assert_api_security_headers(response)

    async def test_on_404(self, client: AsyncClient) -> None:
        response = await client.get("/api/no-such-thing")

        assert response.status_code == 404
        assert_api_security_headers(response)

    async def test_on_413_the_body_size_limit_answers_inside_them(
        self, client: AsyncClient
    ) -> None:
        """The size limit sits inside the headers middleware: its 413 carries them."""
        response = await client.post("/api/auth/register", content=b"x" * (LIMIT + 1))

        assert response.status_code == 413
        assert_api_security_headers(response)

    async def test_on_422(self, client: AsyncClient) -> None:
        response = await client.post("/api/auth/register", json={})

        assert response.status_code == 422
        assert_api_security_headers(response)

    async def test_on_429(
        self, client: AsyncClient, app_under_test: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        one_failure = FailedLoginLimiter("async+memory://", "1/minute", "100/minute")
        monkeypatch.setattr(app_under_test.state, "login_limiter", one_failure)
        form = {"username": "nobody@example.com", "password": "a wrong passphrase"}
        assert (await client.post(LOGIN_URL, data=form)).status_code == 400

        response = await client.post(LOGIN_URL, data=form)

        assert response.status_code == 429
        assert_api_security_headers(response)

    @pytest.mark.usefixtures("unreachable_database")
    async def test_on_503(self, client: AsyncClient) -> None:
        response = await client.get("/api/health/ready")

        assert response.status_code == 503
        assert_api_security_headers(response)

    async def test_on_500(self, app_under_test: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
        # No database at all: opening the request's session raises, a bug's 500.
        monkeypatch.setattr(app_under_test.state, "database", None)
        transport = ASGITransport(app=app_under_test, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="https://test") as client:
            response = await client.get("/api/health/ready")

        assert response.status_code == 500
        assert_api_security_headers(response)

    async def test_docs_keep_working(self, client: AsyncClient) -> None:
        response = await client.get("/docs")

        assert response.status_code == 200
        assert "content-security-policy" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"

    async def test_production_asks_browsers_for_https_only(self) -> None:
        """The app as production builds it: `main.py`'s wiring, not the middleware alone."""
        production = built_with(ENVIRONMENT="production")
        transport = ASGITransport(app=production)
        async with AsyncClient(transport=transport, base_url="https://x") as client:
            for url, status_code in (("/api/health/live", 200), ("/api/no-such-thing", 404)):
                response = await client.get(url)
                assert response.status_code == status_code
                assert response.headers["strict-transport-security"] == PRODUCTION_HSTS
                assert_api_security_headers(response)

    async def test_the_middleware_adds_hsts_when_asked(self) -> None:
        app = SecurityHeadersMiddleware(PlainTextResponse("ok"), hsts=True)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="https://x") as client:
            response = await client.get("/api/anything")

        assert response.headers["strict-transport-security"] == HSTS == PRODUCTION_HSTS
        assert response.headers["x-frame-options"] == "DENY"

    async def test_other_environments_do_not_pin_https(self, client: AsyncClient) -> None:
        # Development runs on plain http://localhost; HSTS there would stick in browsers.
        response = await client.get("/api/health/live")

        assert "strict-transport-security" not in response.headers

    @pytest.mark.parametrize("environment", ["development", "production"])
    async def test_on_500_in_each_environment(
        self, app_under_test: FastAPI, monkeypatch: pytest.MonkeyPatch, environment: str
    ) -> None:
        """Sent from outside every middleware, by the app's handler of unhandled errors."""

        def fail() -> None:
            raise RuntimeError("a bug")

        app_under_test.dependency_overrides[get_async_session] = fail
        current = settings.model_copy(update={"ENVIRONMENT": environment})
        monkeypatch.setattr(app_under_test.state, "settings", current)
        transport = ASGITransport(app=app_under_test, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="https://test") as client:
            response = await client.post("/api/auth/login", data={"username": "a@b.c"})

        assert response.status_code == 500
        assert_api_security_headers(response)
        hsts = response.headers.get("strict-transport-security")
        assert hsts == (HSTS if environment == "production" else None)
