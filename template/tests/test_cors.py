"""CORS: browsers get a grant for the origins of `CORS_ORIGINS` only, and none when it is empty."""

from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

from app.core.config import settings
from app.main import create_app

ALLOWED = "https://app.example.com"
FOREIGN = "https://attacker.example.net"
URL = "/api/health/live"


def built_with(**changes: Any) -> FastAPI:
    """The app as `create_app` builds it from the suite's settings with `changes`."""
    return create_app(settings.model_copy(update={"LOG_FORMAT": settings.log_format, **changes}))


async def preflight_and_request(app: FastAPI, origin: str) -> tuple[Response, Response]:
    """What a browser sends from a page of `origin`: a preflight, then the request."""
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="https://test") as client:
        preflight = await client.options(
            URL,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        request = await client.get(URL, headers={"Origin": origin})
    return preflight, request


def grants(response: Response) -> dict[str, str]:
    """The response's CORS headers. Without `Access-Control-Allow-Origin` a browser keeps
    the response from the page: Starlette sends the others to foreign origins too.
    """
    return {
        name: value
        for name, value in response.headers.items()
        if name.startswith("access-control-")
    }


@pytest.mark.parametrize("origins", [[], [ALLOWED]], ids=["no-origins", "origins-set"])
async def test_a_foreign_origin_gets_no_grant(origins: list[str]) -> None:
    preflight, request = await preflight_and_request(built_with(CORS_ORIGINS=origins), FOREIGN)

    assert "access-control-allow-origin" not in grants(preflight)
    assert preflight.status_code in {400, 405}
    assert "access-control-allow-origin" not in grants(request)
    assert request.status_code == 200


async def test_an_allowed_origin_gets_a_grant_with_credentials() -> None:
    preflight, request = await preflight_and_request(built_with(CORS_ORIGINS=[ALLOWED]), ALLOWED)

    assert preflight.status_code == 200
    assert grants(preflight)["access-control-allow-origin"] == ALLOWED
    assert grants(preflight)["access-control-allow-credentials"] == "true"
    assert "GET" in grants(preflight)["access-control-allow-methods"]
    assert grants(request)["access-control-allow-origin"] == ALLOWED
    assert request.headers["access-control-expose-headers"] == "X-Request-ID"
