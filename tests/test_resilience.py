"""The default render under database faults, load and overload, served by a real uvicorn.

The database is a PostgreSQL server these tests own (`tests/owned_postgres.py`),
stopped and started at will; the shared server of TEST_DATABASE_URL is never
touched. Every HTTP client has a timeout: a request that hangs fails the test.
"""

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import Project, Renders, outside_pytest_tmp
from tests.owned_postgres import OwnedPostgres, owned_postgres
from tests.service import Service, free_port, serve

DATABASE = "resilience"
PASSWORD = "correct-Horse-battery-9"  # noqa: S105 (the test users' password)
# Longer than any configured wait below: a request still open after this is a hang.
CLIENT_TIMEOUT_SECONDS = 15.0


@pytest.fixture(scope="module")
def project(rendered: Renders) -> Project:
    project = rendered["defaults"]
    project.run("uv", "sync", "--locked")
    return project


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
        "ACCESS_SECRET_KEY": secrets.token_urlsafe(32),
        "RESET_PASSWORD_SECRET_KEY": secrets.token_urlsafe(32),
        "VERIFICATION_SECRET_KEY": secrets.token_urlsafe(32),
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


def client(service: Service) -> httpx.Client:
    return httpx.Client(base_url=service.base_url, timeout=CLIENT_TIMEOUT_SECONDS)


def register_and_log_in(http: httpx.Client) -> dict[str, str]:
    email = f"user-{secrets.token_hex(6)}@example.com"
    response = http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return log_in(http, email)


def log_in(http: httpx.Client, email: str) -> dict[str, str]:
    response = http.post("/api/auth/login", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def assert_unavailable(response: httpx.Response) -> None:
    """503 with a JSON reason and a retry hint; never a traceback."""
    assert response.status_code == 503, response.text
    assert "Traceback" not in response.text
    assert response.json()["detail"] == "Database unavailable, try again shortly"
    assert response.headers["Retry-After"].isdigit()


def assert_no_unhandled_errors(service: Service) -> None:
    """uvicorn logs every exception that escaped the app (a 500) under this line."""
    assert "Exception in ASGI application" not in service.output()


def assert_not_ready(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["status"] == "unavailable"
    assert response.json()["database"].startswith("unreachable (")


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


def test_service_recovers_when_its_database_restarts(
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

        running.stop()

        assert_not_ready(http.get("/api/health"))
        assert_unavailable(http.get("/api/users/me", headers=headers))
        assert_unavailable(http.get(post, headers=headers))
        during = {"title": "During", "body": "x"}
        assert_unavailable(http.post("/api/posts/", json=during, headers=headers))

        running.start()

        # Every pooled connection died with the server: none of them may fail a request.
        for _ in range(3):
            assert http.get("/api/users/me", headers=headers).status_code == 200
            assert http.get(post, headers=headers).json()["title"] == "Before"
        assert http.get("/api/health").status_code == 200
    assert_no_unhandled_errors(service)


# --- Load: the documented pool settings serve 50 clients without a single failure ---

LOAD_CLIENTS = 50
# Of those, the clients that log in over and over: Argon2 costs CPU on purpose.
LOGIN_CLIENTS = 5
LOAD_USERS = 10
LOAD_SECONDS = 4.0


@dataclass
class Ledger:
    """What the clients did: their unexpected answers, the posts that must still exist."""

    errors: list[str] = field(default_factory=list)
    kept: dict[int, tuple[dict[str, str], str]] = field(default_factory=dict)
    deleted: list[tuple[dict[str, str], int]] = field(default_factory=list)

    def check(self, response: httpx.Response, expected: int) -> bool:
        if response.status_code != expected:
            request = response.request
            self.errors.append(f"{request.method} {request.url.path}: {response.status_code}")
        return response.status_code == expected


async def register(http: httpx.AsyncClient) -> str:
    email = f"load-{secrets.token_hex(6)}@example.com"
    response = await http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


async def log_in_async(http: httpx.AsyncClient, email: str, ledger: Ledger) -> dict[str, str]:
    login = await http.post("/api/auth/login", data={"username": email, "password": PASSWORD})
    ledger.check(login, 200)
    return {"Authorization": f"Bearer {login.json().get('access_token')}"}


async def login_client(http: httpx.AsyncClient, email: str, until: float, ledger: Ledger) -> None:
    """Log in and read the profile, over and over."""
    while asyncio.get_running_loop().time() < until:
        headers = await log_in_async(http, email, ledger)
        ledger.check(await http.get("/api/users/me", headers=headers), 200)


async def posts_client(
    http: httpx.AsyncClient, headers: dict[str, str], until: float, ledger: Ledger
) -> None:
    """Create, read and change posts, deleting every third, over and over."""
    round_ = 0
    while asyncio.get_running_loop().time() < until:
        round_ += 1
        ledger.check(await http.get("/api/users/me", headers=headers), 200)
        created = await http.post(
            "/api/posts/", json={"title": f"Post {round_}", "body": "load"}, headers=headers
        )
        if not ledger.check(created, 201):
            continue
        post = f"/api/posts/{created.json()['id']}"
        ledger.check(await http.get(post, headers=headers), 200)
        title = f"Post {round_}, changed"
        ledger.check(await http.patch(post, json={"title": title}, headers=headers), 200)
        if round_ % 3 == 0:
            if ledger.check(await http.delete(post, headers=headers), 204):
                ledger.deleted.append((headers, created.json()["id"]))
        else:
            ledger.kept[created.json()["id"]] = (headers, title)


async def run_load(base_url: str) -> Ledger:
    ledger = Ledger()
    limits = httpx.Limits(max_connections=LOAD_CLIENTS)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits
    ) as http:
        emails = await asyncio.gather(*(register(http) for _ in range(LOAD_USERS)))
        tokens = await asyncio.gather(*(log_in_async(http, email, ledger) for email in emails))
        until = asyncio.get_running_loop().time() + LOAD_SECONDS
        await asyncio.gather(
            *(login_client(http, emails[number], until, ledger) for number in range(LOGIN_CLIENTS)),
            *(
                posts_client(http, tokens[number % LOAD_USERS], until, ledger)
                for number in range(LOAD_CLIENTS - LOGIN_CLIENTS)
            ),
        )
        # Every write the service confirmed is there, and every delete is.
        for post_id, (headers, title) in ledger.kept.items():
            response = await http.get(f"/api/posts/{post_id}", headers=headers)
            if ledger.check(response, 200) and response.json()["title"] != title:
                ledger.errors.append(f"post {post_id} lost its change")
        for headers, post_id in ledger.deleted:
            ledger.check(await http.get(f"/api/posts/{post_id}", headers=headers), 404)
    return ledger


def test_documented_pool_serves_fifty_clients_without_errors_or_lost_writes(
    project: Project, running: OwnedPostgres, tmp_path: Path
) -> None:
    # The defaults of .env.example (DATABASE_POOL_SIZE and the rest): nothing set.
    with serve(project, environment(running), tmp_path / "uvicorn.log") as service:
        ledger = asyncio.run(run_load(service.base_url))

    assert ledger.errors == []
    assert len(ledger.kept) >= LOAD_CLIENTS - LOGIN_CLIENTS  # every client got through
    assert_no_unhandled_errors(service)
