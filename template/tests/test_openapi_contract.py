"""The committed openapi.json is the schema the app serves: the API changes only on purpose."""

import difflib
import json

import pytest
from httpx import ASGITransport, AsyncClient

from app.main import app
from commands.openapi import CONTRACT, render


async def test_served_schema_is_the_committed_contract() -> None:
    # The app itself, without the suite's overrides: serving the schema touches no database.
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        served = (await client.get("/openapi.json")).json()
    committed = json.loads(CONTRACT.read_text(encoding="utf-8"))

    if served != committed:
        diff = difflib.unified_diff(
            render(committed).splitlines(keepends=True),
            render(served).splitlines(keepends=True),
            fromfile="openapi.json (committed)",
            tofile="/openapi.json (served)",
        )
        pytest.fail(
            "The API no longer matches openapi.json. If the change is intended, run\n"
            "    uv run python -m commands.openapi\n"
            "and commit openapi.json.\n\n" + "".join(diff),
            pytrace=False,
        )
