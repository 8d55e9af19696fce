"""The application's start-up and shutdown (the lifespan in app/main.py)."""

import gc
import signal
from collections.abc import Iterator

import pytest
from httpx import AsyncClient

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
