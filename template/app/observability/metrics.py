"""Prometheus metrics: requests, the connection pool, failed logins; and `GET /metrics`.

Requests are labelled by route *template* (`/api/users/{id}`), never by the raw
path: a path that matched no route counts as `<unmatched>`, so a scanner that
tries a thousand paths adds no series. Status codes are labelled by class (2xx).

With several worker processes (WEB_CONCURRENCY), each process keeps its own
counts. prometheus-client's multiprocess mode adds them up in the folder
PROMETHEUS_MULTIPROC_DIR names (`python -m commands.serve` makes one when it is
unset), and any worker's `/metrics` answers for all of them. prometheus-client
reports no process metrics (CPU, memory, open files) in that mode: `WorkerProcesses`
reads them for every live worker, one series each, labelled by `pid`.
"""

import hmac
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from fastapi.routing import iter_route_contexts
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import settings

# The route label of requests that matched no route: 404s of unknown paths.
UNMATCHED = "<unmatched>"

REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route template and status class.",
    ["method", "route", "status"],
)
DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template.",
    ["method", "route"],
)
IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "Requests being served.",
    ["method"],
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "db_pool_size",
    "Connections the pool keeps open (DATABASE_POOL_SIZE), summed over workers.",
    multiprocess_mode="livesum",
)
POOL_OPEN = Gauge(
    "db_pool_connections_open",
    "Database connections open; above db_pool_size, the overflow.",
    multiprocess_mode="livesum",
)
POOL_CHECKED_OUT = Gauge(
    "db_pool_connections_checked_out",
    "Database connections in use by a request.",
    multiprocess_mode="livesum",
)
POOL_TIMEOUTS = Counter(
    "db_pool_timeouts",
    "Requests that waited DATABASE_POOL_TIMEOUT_SECONDS for a connection and got a 503.",
)
LOGIN_FAILURES = Counter("login_failures", "Logins refused for a wrong e-mail or password.")
LOGIN_LIMITED = Counter(
    "login_limited", "Logins answered 429 by the failed-login limit, before any password check."
)

STATUS_CLASSES = {code // 100: f"{code // 100}xx" for code in range(100, 600, 100)}


class RouteTemplates:
    """The full path template of each route, the prefixes of the routers it is in included.

    The router puts the route it matched in the scope, whose own path lacks
    the prefixes of the routers that include it (`/me` for `/api/users/me`).
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self._by_route: dict[int, str] = {}

    def __call__(self, scope: Scope) -> str:
        # FastAPI's routes put themselves in the scope; Starlette's, only their endpoint.
        matched: object = scope.get("route") or scope.get("endpoint")
        if matched is None:
            return UNMATCHED
        template = self._by_route.get(id(matched))
        if template is None:
            # A route added since the last look (the first request sees them all).
            self._by_route = {}
            for context in iter_route_contexts(self.app.routes):
                path = context.path_format or UNMATCHED
                route = context.original_route
                self._by_route.setdefault(id(route), path)
                self._by_route.setdefault(id(getattr(route, "endpoint", None)), path)
            template = self._by_route.setdefault(id(matched), getattr(matched, "path", UNMATCHED))
        return template


class MetricsMiddleware:
    """Count and time every HTTP request, as plain ASGI (see app/api/middleware.py)."""

    def __init__(self, app: ASGIApp, templates: RouteTemplates) -> None:
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        status = 500  # What the client gets when the app fails before answering.
        in_progress = IN_PROGRESS.labels(method)
        in_progress.inc()
        start = time.perf_counter()

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = self.templates(scope)
            DURATION.labels(method, route).observe(time.perf_counter() - start)
            REQUESTS.labels(method, route, STATUS_CLASSES.get(status // 100, "other")).inc()
            in_progress.dec()


def watch_pool(engine: AsyncEngine, pool_size: int) -> None:
    """Follow the pool's connections through SQLAlchemy's pool events."""
    POOL_SIZE.set(pool_size)
    pool = engine.sync_engine.pool
    event.listen(pool, "connect", lambda *_: POOL_OPEN.inc())
    event.listen(pool, "close", lambda *_: POOL_OPEN.dec())
    event.listen(pool, "close_detached", lambda *_: POOL_OPEN.dec())
    event.listen(pool, "checkout", lambda *_: POOL_CHECKED_OUT.inc())
    event.listen(pool, "checkin", lambda *_: POOL_CHECKED_OUT.dec())


def process_collector(pid: int) -> ProcessCollector:
    """prometheus-client's collector of the standard process metrics, for `pid`."""
    return ProcessCollector(pid=lambda: pid, registry=None)


class WorkerProcesses:
    """The standard process metrics of every live worker, from /proc, labelled by `pid`.

    A worker's pid is in the name of its live gauges' file in the shared folder
    (`gauge_livesum_<pid>.db`, made as this module is imported), which goes when
    the worker stops cleanly. A worker killed leaves its file but no /proc entry:
    prometheus-client's ProcessCollector then reports nothing for it.
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def pids(self) -> list[int]:
        names = (path.stem.rpartition("_")[2] for path in self.folder.glob("gauge_livesum_*.db"))
        return sorted(int(name) for name in names if name.isdigit())

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for pid in self.pids():
            for family in process_collector(pid).collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from families.values()


def scraped_registry() -> CollectorRegistry:
    """This process's metrics, or in multiprocess mode those of every worker."""
    if settings.PROMETHEUS_MULTIPROC_DIR is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(WorkerProcesses(settings.PROMETHEUS_MULTIPROC_DIR))
    return registry


def serve_metrics(app: Starlette, token: str | None) -> None:
    """Add `GET /metrics`, outside the OpenAPI schema; with `token`, only for its bearer."""
    expected = f"Bearer {token}".encode() if token is not None else None

    async def metrics(request: Request) -> Response:
        if expected is not None:
            offered = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(offered, expected):
                return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return Response(generate_latest(scraped_registry()), media_type=CONTENT_TYPE_LATEST)

    endpoint: Callable[[Request], Awaitable[Response]] = metrics
    app.add_route("/metrics", endpoint, methods=["GET"], include_in_schema=False)
    app.add_middleware(MetricsMiddleware, templates=RouteTemplates(app))


def forget_this_process() -> None:
    """At shutdown, in multiprocess mode: drop this worker's live gauges from the sum."""
    if settings.PROMETHEUS_MULTIPROC_DIR is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
