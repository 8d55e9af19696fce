"""The default render through a real PgBouncer in transaction pooling mode.

With DATABASE_BEHIND_PGBOUNCER the whole HTTP flow and 50 concurrent clients
run without one error; without it, the same service through the same PgBouncer
fails on asyncpg's prepared statements, which is what the setting prevents.
"""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import CLIENT_TIMEOUT_SECONDS, client, register_and_log_in
from tests.support.databases import Databases
from tests.support.load import LOAD_CLIENTS, LOGIN_CLIENTS, run_load
from tests.support.pgbouncer import PgBouncer, pgbouncer
from tests.support.project import Project
from tests.support.service import (
    assert_no_unhandled_errors,
    migrated_database,
    new_secret_keys,
    serve,
)

pytestmark = pytest.mark.database

HAMMER_SECONDS = 3.0
# One environment for every service of the module: a token of one is valid on another.
NEW_PASSWORD = "another-Horse-battery-7"  # noqa: S105 (a made-up account's)
SECRETS = new_secret_keys()
# asyncpg's exceptions for a prepared statement missing on, or already on, the
# server connection PgBouncer chose.
PREPARED_STATEMENT_ERRORS = ("InvalidSQLStatementNameError", "DuplicatePreparedStatementError")


def prepared_statement_errors(log: str) -> list[str]:
    """The names of those exceptions that `log` holds (the server's message is withheld)."""
    return [name for name in PREPARED_STATEMENT_ERRORS if name in log]


@pytest.fixture(scope="module")
def database(project: Project) -> Iterator[Databases]:
    """A fresh database, migrated straight on the server (not through PgBouncer)."""
    with migrated_database(project, environment("")) as created:
        yield created


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    with pgbouncer() as running:
        yield running


def environment(database_url: str, **settings: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        **SECRETS,
        # E-mails go nowhere: a closed port fails at once.
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "9",
        **settings,
    }


def through(bouncer: PgBouncer, database: Databases, **settings: str) -> dict[str, str]:
    name = database.url.rsplit("/", 1)[1].split("?", 1)[0]
    return environment(bouncer.url(name), **settings)


async def hammer(base_url: str, headers: dict[str, str], paths: list[str]) -> Counter[str]:
    """LOAD_CLIENTS clients GET the paths over and over for HAMMER_SECONDS.

    What they got: statuses, and the names of the errors that left no answer
    (uvicorn closes a connection after an exception escaped the app).
    """
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=LOAD_CLIENTS)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits
    ) as http:
        until = asyncio.get_running_loop().time() + HAMMER_SECONDS

        async def one_client() -> None:
            while asyncio.get_running_loop().time() < until:
                for path in paths:
                    try:
                        outcomes[str((await http.get(path)).status_code)] += 1
                    except httpx.TransportError as exc:
                        outcomes[type(exc).__name__] += 1

        await asyncio.gather(*(one_client() for _ in range(LOAD_CLIENTS)))
    return outcomes


def test_whole_flow_and_fifty_clients_through_pgbouncer_without_errors(
    project: Project, database: Databases, bouncer: PgBouncer, tmp_path: Path
) -> None:
    env = through(bouncer, database, DATABASE_BEHIND_PGBOUNCER="true")
    with serve(project, env, tmp_path / "uvicorn.log") as service, client(service) as http:
        ready = http.get("/api/health/ready").json()
        assert ready == {"status": "ok", "database": "ok"}, bouncer.output()
        headers = register_and_log_in(http)
        me = http.get("/api/users/me", headers=headers)
        assert me.status_code == 200, me.text
        changed = http.patch("/api/users/me", json={"password": NEW_PASSWORD}, headers=headers)
        assert changed.status_code == 200, changed.text
        # A new password ends every session, this one's too.
        assert http.get("/api/users/me", headers=headers).status_code == 401
        login = {"username": me.json()["email"], "password": NEW_PASSWORD}
        logged_in = http.post("/api/auth/login", data=login)
        assert logged_in.status_code == 200, logged_in.text
        headers = {"Authorization": f"Bearer {logged_in.json()['access_token']}"}
        created = http.post("/api/posts/", json={"title": "T", "body": "x"}, headers=headers)
        assert created.status_code == 201, created.text
        post = f"/api/posts/{created.json()['id']}"
        assert http.patch(post, json={"title": "U"}, headers=headers).json()["title"] == "U"
        assert http.get("/api/posts/", headers=headers).status_code == 200
        assert http.delete(post, headers=headers).status_code == 204
        assert http.get(post, headers=headers).status_code == 404
        assert http.post("/api/auth/logout", headers=headers).status_code == 204

        ledger = asyncio.run(run_load(service.base_url))
        outcomes = asyncio.run(
            hammer(service.base_url, headers, ["/api/users/me", "/api/health/ready"])
        )

    assert ledger.errors == []
    assert len(ledger.kept) >= LOAD_CLIENTS - LOGIN_CLIENTS
    assert set(outcomes) == {"200"}, outcomes
    assert not prepared_statement_errors(service.output())
    assert_no_unhandled_errors(service)


def test_without_the_setting_prepared_statements_break_through_pgbouncer(
    project: Project, database: Databases, bouncer: PgBouncer, tmp_path: Path
) -> None:
    # A user and a token from a service that reaches PostgreSQL directly.
    with (
        serve(project, environment(database.url), tmp_path / "direct.log") as direct,
        client(direct) as http,
    ):
        headers = register_and_log_in(http)

    with serve(project, through(bouncer, database), tmp_path / "uvicorn.log") as service:
        outcomes = asyncio.run(
            hammer(service.base_url, headers, ["/api/users/me", "/api/health/ready"])
        )

    assert outcomes["200"] > 0, outcomes  # some get through: it is not PgBouncer that fails
    failed = outcomes.total() - outcomes["200"]
    assert failed > 0, outcomes
    # Named in the log by asyncpg's exceptions (the server's message is withheld).
    assert prepared_statement_errors(service.output())
