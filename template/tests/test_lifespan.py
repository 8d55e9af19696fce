"""The application's start-up and shutdown (the lifespan in app/main.py)."""

import gc
import logging
import signal
from collections.abc import Iterator
from typing import cast

import pytest
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import State

from app.core.config import Settings
from app.core.shutdown import Drain, drain_on_sigterm
from app.main import app


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """No object frozen before the test, and none left frozen for the rest of the run."""
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
async def test_start_up_takes_what_it_built_out_of_the_collectors_way() -> None:
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() > 0
        # Frozen objects are left out of every generation the collector walks.
        assert not any(tracked is app for tracked in gc.get_objects())


async def test_sigterm_is_left_alone_outside_uvicorn() -> None:
    """The drain needs uvicorn's handler to hand over to; other servers keep their own."""
    before = signal.getsignal(signal.SIGTERM)

    drain_on_sigterm(delay_seconds=5, grace_seconds=30)

    assert signal.getsignal(signal.SIGTERM) is before


async def test_responses_ask_to_close_the_connection_once_draining(
    client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So that kept-alive clients reconnect before the port closes (app/core/shutdown.py)."""
    assert "connection" not in (await client.get("/api/health/live")).headers

    monkeypatch.setattr(Drain, "started", True)

    assert (await client.get("/api/health/live")).headers["connection"] == "close"
    assert (await client.get("/no-such-page")).headers["connection"] == "close"


def serve_with(monkeypatch: pytest.MonkeyPatch, **changes: int) -> None:
    """The app's settings with `changes`, in a state of the test's own."""
    current = {name: app.state[name] for name in app.state}
    settings = cast(Settings, app.state.settings).model_copy(update=changes)
    monkeypatch.setattr(app, "state", State({**current, "settings": settings}))


def pool_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "max_connections" in record.getMessage()
    ]


@pytest.mark.usefixtures("unfrozen")
async def test_start_up_warns_when_the_workers_pools_pass_max_connections(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the real server: its own max_connections, asked at start-up."""
    async with engine.connect() as connection:
        allowed = int(await connection.scalar(text("SHOW max_connections")))
    workers = allowed // 10 + 1  # of 10 connections each: one worker too many
    serve_with(monkeypatch, WEB_CONCURRENCY=workers, DATABASE_POOL_SIZE=8, DATABASE_MAX_OVERFLOW=2)

    with caplog.at_level(logging.INFO):
        async with app.router.lifespan_context(app):
            pass

    assert pool_warnings(caplog) == [
        f"WEB_CONCURRENCY x (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW) = {workers} x 10 = "
        f"{workers * 10} connections, more than the server's max_connections ({allowed}): "
        'lower them, or raise max_connections (README, "Connection pool and timeouts")'
    ]


@pytest.mark.usefixtures("unfrozen")
async def test_start_up_is_quiet_when_the_pools_fit(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The defaults, one worker per core of a 4-core host.
    serve_with(monkeypatch, WEB_CONCURRENCY=4)

    with caplog.at_level(logging.INFO):
        async with app.router.lifespan_context(app):
            pass

    assert pool_warnings(caplog) == []
