"""/docs and /redoc: off in production unless asked for, and never a third party's script."""

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from app.core.config import Settings, settings
from app.main import new_app

PAGES = ["/docs", "/redoc"]


class Sources(HTMLParser):
    """The addresses a page loads: scripts, styles, icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {"script": "src", "link": "href", "img": "src"}
        if tag in names:
            self.urls += [value for name, value in attrs if name == names[tag] and value]


def sources(page: str) -> list[str]:
    parser = Sources()
    parser.feed(page)
    return parser.urls


@pytest.fixture
async def production(request: pytest.FixtureRequest) -> AsyncIterator[AsyncClient]:
    """An app built as create_app builds it, for production with API_DOCS_ENABLED as given."""
    configured: Settings = settings.model_copy(
        update={"ENVIRONMENT": "production", "API_DOCS_ENABLED": request.param}
    )
    app: FastAPI = new_app(configured, title="docs test")
    async with AsyncClient(transport=ASGITransport(app=app), base_url="https://test") as client:
        yield client


@pytest.mark.parametrize("production", [None, False], indirect=True)
async def test_production_serves_no_docs_unless_asked(production: AsyncClient) -> None:
    for path in PAGES:
        assert (await production.get(path)).status_code == 404, path
    # The schema stays: clients are generated from it.
    assert (await production.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize("production", [True], indirect=True)
async def test_production_serves_docs_when_asked(production: AsyncClient) -> None:
    for path in PAGES:
        assert (await production.get(path)).status_code == 200, path


@pytest.mark.parametrize("path", PAGES)
async def test_docs_load_only_what_the_service_serves(client: AsyncClient, path: str) -> None:
    page = await client.get(path)
    assert page.status_code == 200

    urls = sources(page.text)
    assert any(url.endswith(".js") for url in urls), urls
    for url in urls:
        assert urlsplit(url).netloc == "", url  # no other origin
        assert url.startswith("/"), url
        assert (await client.get(url)).status_code == 200, url
    assert "http://" not in page.text
    assert "https://" not in page.text
