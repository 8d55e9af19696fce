"""GET /metrics: what Prometheus scrapes, read back with prometheus-client's own parser."""

import os
import uuid
from pathlib import Path

from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import settings
from app.db.models.user import User
from app.db.session import Database
from app.observability.metrics import UNMATCHED, WorkerProcesses, serve_metrics, watch_pool
from tests.clients import LOGIN_URL
from tests.conftest import make_client

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: AsyncClient) -> Series:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


def added(before: Series, after: Series, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_requests_are_counted_by_route_template(user_client: AsyncClient) -> None:
    before = await scrape(user_client)
    for _ in range(3):
        assert (await user_client.get("/api/users/me")).status_code == 200
    other_user = f"/api/users/{uuid.uuid4()}"
    assert (await user_client.get(other_user)).status_code == 403
    after = await scrape(user_client)

    me = {"method": "GET", "route": "/api/users/me"}
    assert added(before, after, "http_requests_total", **me, status="2xx") == 3
    assert added(before, after, "http_request_duration_seconds_count", **me) == 3
    by_id = {"method": "GET", "route": "/api/users/{id}"}
    assert added(before, after, "http_requests_total", **by_id, status="4xx") == 1
    # The scrape before counts itself once it has answered.
    scrapes = {"method": "GET", "route": "/metrics", "status": "2xx"}
    assert added(before, after, "http_requests_total", **scrapes) == 1
    assert not any(other_user in str(labels) for _, labels in after)
    # Only the scrape being answered is in progress.
    assert value(after, "http_requests_in_progress", method="GET") == 1


async def test_unknown_paths_add_no_series(client: AsyncClient) -> None:
    # The first of each kind makes its series: an unknown path, and a scrape itself.
    assert (await client.get("/first-unknown-path")).status_code == 404
    await scrape(client)
    before = await scrape(client)
    for _ in range(1000):
        assert (await client.get(f"/{uuid.uuid4().hex}")).status_code == 404
    after = await scrape(client)

    assert after.keys() == before.keys()
    unmatched = {"method": "GET", "route": UNMATCHED}
    assert added(before, after, "http_requests_total", **unmatched, status="4xx") == 1000


async def test_failed_logins_and_limited_logins_are_counted(
    client: AsyncClient, user: User
) -> None:
    before = await scrape(client)
    allowed = int(settings.LOGIN_FAILURES_PER_EMAIL.split("/")[0])
    wrong = {"username": user.email, "password": "not-the-password"}
    for _ in range(allowed):
        assert (await client.post(LOGIN_URL, data=wrong)).status_code == 400
    assert (await client.post(LOGIN_URL, data=wrong)).status_code == 429
    after = await scrape(client)

    assert added(before, after, "login_failures_total") == allowed
    assert added(before, after, "login_limited_total") == 1


async def test_pool_gauges_follow_the_connections(
    client: AsyncClient, app_database: Database
) -> None:
    watch_pool(app_database.engine, settings.DATABASE_POOL_SIZE)
    before = await scrape(client)
    async with app_database.engine.connect():
        during = await scrape(client)
    after = await scrape(client)

    assert value(during, "db_pool_size") == settings.DATABASE_POOL_SIZE
    assert added(before, during, "db_pool_connections_checked_out") == 1
    assert value(after, "db_pool_connections_checked_out") == value(
        before, "db_pool_connections_checked_out"
    )
    assert value(during, "db_pool_connections_open") >= 1


async def test_process_metrics_are_reported(client: AsyncClient) -> None:
    series = await scrape(client)
    assert value(series, "process_resident_memory_bytes") > 0
    assert value(series, "process_cpu_seconds_total") > 0


def test_each_live_worker_has_its_process_metrics_by_pid(tmp_path: Path) -> None:
    """In multiprocess mode: one series per worker whose live gauges' file is in the folder;
    a worker gone without cleaning up (no /proc entry) has none.
    """
    gone = 2**22 + 1  # above Linux's largest pid: no such process
    for pid in (os.getpid(), os.getppid(), gone):
        (tmp_path / f"gauge_livesum_{pid}.db").touch()
    registry = CollectorRegistry()
    registry.register(WorkerProcesses(str(tmp_path)))
    families = {family.name: family for family in registry.collect()}

    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"):
        pids = {sample.labels["pid"] for sample in families[name].samples}
        assert pids == {str(os.getpid()), str(os.getppid())}, name


def test_metrics_are_not_in_the_openapi_schema(app_under_test: FastAPI) -> None:
    assert "/metrics" not in app_under_test.openapi()["paths"]


async def test_a_token_keeps_metrics_from_everyone_else() -> None:
    app = FastAPI()
    serve_metrics(app, token="scraper-token")
    async with make_client(app) as client:
        assert (await client.get("/metrics")).status_code == 401
        wrong = {"Authorization": "Bearer another-token"}
        assert (await client.get("/metrics", headers=wrong)).status_code == 401
        right = {"Authorization": "Bearer scraper-token"}
        response = await client.get("/metrics", headers=right)
    assert response.status_code == 200
    assert "http_requests_total" in response.text
