"""Request size limit and security headers."""

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from starlette.responses import PlainTextResponse

from app.api.middleware import API_SECURITY_HEADERS, HSTS, SecurityHeadersMiddleware
from app.core.config import settings
from app.db.models.user import User
from app.db.session import get_async_session

LIMIT = settings.MAX_REQUEST_BODY_BYTES


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

        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]

    async def test_docs_keep_working(self, client: AsyncClient) -> None:
        response = await client.get("/docs")

        assert response.status_code == 200
        assert "content-security-policy" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"

    async def test_production_asks_browsers_for_https_only(self) -> None:
        # main.py turns HSTS on when ENVIRONMENT is production.
        app = SecurityHeadersMiddleware(PlainTextResponse("ok"), hsts=True)
        async with AsyncClient(transport=ASGITransport(app=app), base_url="https://x") as client:
            response = await client.get("/api/anything")

        assert response.headers["strict-transport-security"] == HSTS
        assert response.headers["x-frame-options"] == "DENY"

    async def test_other_environments_do_not_pin_https(self, client: AsyncClient) -> None:
        # Development runs on plain http://localhost; HSTS there would stick in browsers.
        response = await client.get("/api/health/live")

        assert "strict-transport-security" not in response.headers

    @pytest.mark.usefixtures("unreachable_database")
    async def test_a_503_has_them(self, client: AsyncClient) -> None:
        credentials = {"username": "someone@example.com", "password": "correct-Horse-battery-9"}
        response = await client.post("/api/auth/login", data=credentials)

        assert response.status_code == 503
        for name, value in API_SECURITY_HEADERS.items():
            assert response.headers[name] == value

    @pytest.mark.parametrize("environment", ["development", "production"])
    async def test_a_500_has_them_too(
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
        for name, value in API_SECURITY_HEADERS.items():
            assert response.headers[name] == value
        hsts = response.headers.get("strict-transport-security")
        assert hsts == (HSTS if environment == "production" else None)
