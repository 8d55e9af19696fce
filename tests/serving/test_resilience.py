"""The default render under database faults, load and overload, served by a real uvicorn.

The database is a PostgreSQL server these tests own (`tests/support/owned_postgres.py`),
stopped and started at will; the shared server of TEST_DATABASE_URL is never
touched. Every HTTP client has a timeout: a request that hangs fails the test.
"""

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.clients import CLIENT_TIMEOUT_SECONDS, PASSWORD, client, register_and_log_in
from tests.support.load import LOAD_CLIENTS, LOGIN_CLIENTS, run_load
from tests.support.owned_postgres import OwnedPostgres, owned_postgres
from tests.support.ports import free_port
from tests.support.project import Project, outside_pytest_tmp
from tests.support.service import Service, assert_no_unhandled_errors, new_secret_keys, serve

DATABASE = "resilience"


@pytest.fixture(scope="module")
def postgres(project: Project) -> Iterator[OwnedPostgres]:
    """The tests' own server, with the project's schema migrated in `DATABASE`."""
    with outside_pytest_tmp("resilience-postgres-") as folder, owned_postgres(folder) as server:
        with server.connect() as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=environment(server))
        yield server


def environment(postgres: OwnedPostgres, **settings: str) -> dict[str, str]:
    """Production settings on the tests' server; mail to a closed port fails at once."""
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": postgres.url(DATABASE),
        **new_secret_keys(),
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(free_port()),
        **settings,
    }


@pytest.fixture
def running(postgres: OwnedPostgres) -> Iterator[OwnedPostgres]:
    """The tests' server, running again at the end whatever the test did to it."""
    try:
        yield postgres
    finally:
        postgres.start()


def assert_unavailable(response: httpx.Response) -> None:
    """503 with a JSON reason and a retry hint; never a traceback."""
    assert response.status_code == 503, response.text
    assert "Traceback" not in response.text
    assert response.json()["detail"] == "Database unavailable, try again shortly"
    assert response.headers["Retry-After"].isdigit()


def assert_not_ready(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable"
    assert response.json()["database"].startswith("unreachable (")


def get_at_once(
    service: Service,
    headers: dict[str, str],
    paths: list[str],
    timeout: float = CLIENT_TIMEOUT_SECONDS,
) -> list[int]:
    """GET every path concurrently, each on a connection of its own; their statuses."""

    async def get_all() -> list[int]:
        async with httpx.AsyncClient(
            base_url=service.base_url, headers=headers, timeout=timeout
        ) as http:
            responses = await asyncio.gather(*(http.get(path) for path in paths))
        return [response.status_code for response in responses]

    return asyncio.run(get_all())


def wait_for_lock_waiters(postgres: OwnedPostgres) -> None:
    """Until a session of the app waits for a lock."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
    with postgres.connect() as connection:
        for _ in range(int(CLIENT_TIMEOUT_SECONDS / 0.05)):
            if connection.execute(query, (DATABASE,)).fetchone() != (0,):
                return
            time.sleep(0.05)
    raise AssertionError("no request of the service ever waited for the lock")


def test_service_starts_without_its_database_and_serves_once_it_is_up(
    project: Project, running: OwnedPostgres, tmp_path: Path
) -> None:
    running.stop()

    with (
        serve(project, environment(running), tmp_path / "uvicorn.log") as service,
        client(service) as http,
    ):
        for path in ("/api/health", "/api/health/ready"):
            assert_not_ready(http.get(path))
        credentials = {"username": "nobody@example.com", "password": PASSWORD}
        assert_unavailable(http.post("/api/auth/login", data=credentials))
        body = {"email": "first@example.com", "password": PASSWORD}
        assert_unavailable(http.post("/api/auth/register", json=body))
        # Without credentials nothing needs the database: the usual 401.
        assert http.get("/api/users/me").status_code == 401

        running.start()

        assert http.get("/api/health").json() == {"status": "ok", "database": "ok"}
        headers = register_and_log_in(http)
        assert http.get("/api/users/me", headers=headers).status_code == 200
    assert_no_unhandled_errors(service)


def test_service_answers_503_while_its_database_restarts_then_recovers(
    project: Project, running: OwnedPostgres, tmp_path: Path
) -> None:
    with (
        serve(project, environment(running), tmp_path / "uvicorn.log") as service,
        client(service) as http,
    ):
        headers = register_and_log_in(http)
        created = http.post("/api/posts/", json={"title": "Before", "body": "x"}, headers=headers)
        assert created.status_code == 201, created.text
        post = f"/api/posts/{created.json()['id']}"

        with polling(service, "/api/users/me", headers) as statuses:
            restart_under_requests(running, http, post, headers)
        # Including the moments when the server was shutting down or starting up.
        assert set(statuses) <= {200, 503}, statuses
        assert 503 in statuses

        for _ in range(3):
            assert http.get("/api/users/me", headers=headers).status_code == 200
            assert http.get(post, headers=headers).json()["title"] == "Before"
        assert http.get("/api/health").status_code == 200
    assert_no_unhandled_errors(service)


def test_service_recovers_when_its_database_restarts_while_idle(
    project: Project, running: OwnedPostgres, tmp_path: Path
) -> None:
    with (
        serve(project, environment(running), tmp_path / "uvicorn.log") as service,
        client(service) as http,
    ):
        headers = register_and_log_in(http)
        # The pool now holds connections, which the restart kills without a word.
        assert get_at_once(service, headers, ["/api/users/me"] * 10) == [200] * 10

        running.stop()
        running.start()

        # Each was found closed when the pool handed it out, and replaced: not one request fails.
        assert get_at_once(service, headers, ["/api/users/me"] * 10) == [200] * 10
    assert_no_unhandled_errors(service)


def restart_under_requests(
    running: OwnedPostgres, http: httpx.Client, post: str, headers: dict[str, str]
) -> None:
    """Stop the server (a request waiting on it), check the answers while it is down, start it."""
    # The server goes down while a request is waiting on it: that one gets a 503 too.
    # closing(): the server that would commit the blocker's transaction is gone.
    with closing(running.connect(DATABASE)) as blocker, ThreadPoolExecutor(1) as thread:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
        in_flight = thread.submit(http.get, post, headers=headers)
        wait_for_lock_waiters(running)
        running.stop()
        assert_unavailable(in_flight.result())

    assert_not_ready(http.get("/api/health"))
    assert_unavailable(http.get("/api/users/me", headers=headers))
    assert_unavailable(http.get(post, headers=headers))
    during = {"title": "During", "body": "x"}
    assert_unavailable(http.post("/api/posts/", json=during, headers=headers))

    running.start()


@contextmanager
def polling(service: Service, path: str, headers: dict[str, str]) -> Iterator[list[int]]:
    """GET `path` over and over in a thread while the block runs; the statuses it got."""
    statuses: list[int] = []
    done = threading.Event()

    def poll() -> None:
        with client(service) as http:
            while not done.is_set():
                statuses.append(http.get(path, headers=headers).status_code)

    with ThreadPoolExecutor(1) as thread:
        poller = thread.submit(poll)
        try:
            yield statuses
        finally:
            done.set()
            poller.result()


# --- Load: the documented pool settings serve 50 clients without a single failure ---


def test_documented_pool_serves_fifty_clients_without_errors_or_lost_writes(
    project: Project, running: OwnedPostgres, tmp_path: Path
) -> None:
    # The defaults of .env.example (DATABASE_POOL_SIZE and the rest): nothing set.
    with serve(project, environment(running), tmp_path / "uvicorn.log") as service:
        ledger = asyncio.run(run_load(service.base_url))

    # Among the errors would be every 503: a request the full pool turned away.
    assert ledger.errors == []
    assert len(ledger.kept) >= LOAD_CLIENTS - LOGIN_CLIENTS  # every client got through
    assert_no_unhandled_errors(service)


# --- Overload: far more clients than connections, some of them leaving mid-request ---

OVERLOAD_SETTINGS = {
    "DATABASE_POOL_SIZE": "4",
    "DATABASE_MAX_OVERFLOW": "2",
    "DATABASE_POOL_TIMEOUT_SECONDS": "1",
    "DATABASE_STATEMENT_TIMEOUT_SECONDS": "3",
}
POOL_CONNECTIONS = 6
OVERLOAD_CLIENTS = 120
OVERLOAD_SECONDS = 4.0
# Impatient clients hang up after this, mid-request: the service must not care.
IMPATIENT_SECONDS = 0.2
# The overload is over: the first normal requests must be answered within this.
RECOVERY_SECONDS = 1.0


@dataclass
class Tally:
    statuses: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    hang_ups: int = 0


async def patient_client(
    http: httpx.AsyncClient, paths: list[str], until: float, tally: Tally
) -> None:
    """Waits for every answer: each must come, as a 200 or a quick 503."""
    while asyncio.get_running_loop().time() < until:
        for path in paths:
            try:
                response = await http.get(path)
            except httpx.HTTPError as exc:
                tally.failures.append(f"GET {path}: {exc!r}")
                return
            tally.statuses.append(response.status_code)
            if response.status_code not in {200, 503}:
                tally.failures.append(f"GET {path}: {response.status_code} {response.text}")


async def impatient_client(
    http: httpx.AsyncClient, paths: list[str], until: float, tally: Tally
) -> None:
    """Hangs up on every request that is not answered at once."""
    while asyncio.get_running_loop().time() < until:
        for path in paths:
            try:
                await http.get(path, timeout=IMPATIENT_SECONDS)
            except httpx.TimeoutException:
                tally.hang_ups += 1


async def overload(base_url: str, headers: dict[str, str], paths: list[str]) -> Tally:
    tally = Tally()
    limits = httpx.Limits(max_connections=OVERLOAD_CLIENTS)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits
    ) as http:
        until = asyncio.get_running_loop().time() + OVERLOAD_SECONDS
        half = OVERLOAD_CLIENTS // 2
        await asyncio.gather(
            *(patient_client(http, paths, until, tally) for _ in range(half)),
            *(impatient_client(http, paths, until, tally) for _ in range(half)),
        )
    return tally


def app_sessions(postgres: OwnedPostgres) -> list[tuple[object, ...]]:
    """The state and query of every connection the app holds to its database."""
    with postgres.connect() as connection:
        return connection.execute(
            "SELECT state, query FROM pg_stat_activity WHERE datname = %s", (DATABASE,)
        ).fetchall()


def test_overloaded_service_fails_fast_and_recovers_at_once(
    project: Project, running: OwnedPostgres, tmp_path: Path
) -> None:
    env = environment(running, **OVERLOAD_SETTINGS)
    with serve(project, env, tmp_path / "uvicorn.log") as service, client(service) as http:
        headers = register_and_log_in(http)
        created = http.post("/api/posts/", json={"title": "T", "body": "x"}, headers=headers)
        assert created.status_code == 201, created.text
        # Requests that wait on the database (a post; the readiness check, which gives up
        # after its own timeout), and one that holds a connection only briefly.
        paths = [f"/api/posts/{created.json()['id']}", "/api/health", "/api/users/me"]

        # A long migration, say: every query on these tables waits, holding its connection.
        with running.connect(DATABASE) as blocker, blocker.transaction():
            blocker.execute("LOCK TABLE posts, alembic_version IN ACCESS EXCLUSIVE MODE")
            tally = asyncio.run(overload(service.base_url, headers, paths))

        statuses = get_at_once(service, headers, paths * 3, timeout=RECOVERY_SECONDS)
        sessions = app_sessions(running)

    assert tally.failures == []
    assert 503 in tally.statuses  # requests waiting for a connection were turned away
    assert tally.hang_ups > 0
    assert statuses == [200] * len(paths) * 3
    # The pool kept its bound, and no connection was left inside a transaction.
    assert len(sessions) <= POOL_CONNECTIONS
    assert [session for session in sessions if session[0] != "idle"] == []
    assert_no_unhandled_errors(service)
