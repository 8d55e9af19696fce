"""Several instances of one render, as production runs them: one PostgreSQL, one Redis.

Three uvicorn processes (one of them with WEB_CONCURRENCY=2, so four workers)
serve the database-strategy render, installed from the lock it ships: Redis's
client comes with it, nothing is added here. Redis is a server this module owns
(tests/support/redis_server.py), stopped and started at will; the database is a
fresh one on the server under test.
"""

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import CLIENT_TIMEOUT_SECONDS, PASSWORD
from tests.support.databases import Databases
from tests.support.ports import free_port
from tests.support.project import Project, Renders, outside_pytest_tmp
from tests.support.redis_server import RedisServer, redis_server
from tests.support.service import (
    Service,
    assert_no_unhandled_errors,
    migrated_database,
    new_secret_keys,
    serve,
)

pytestmark = pytest.mark.database

COMBINATION = "github-database-bearer-bare"  # the database strategy: logout revokes
FAILURES_ALLOWED = 3
# One environment for every instance: the same secrets, as a deployment shares them.
SECRETS = new_secret_keys()


@pytest.fixture(scope="module")
def project(rendered: Renders) -> Project:
    """The render as shipped: `--locked` fails rather than change its lock."""
    project = rendered[COMBINATION]
    project.run("uv", "sync", "--locked")
    return project


@pytest.fixture(scope="module")
def database(project: Project) -> Iterator[Databases]:
    production = {"ENVIRONMENT": "production", **SECRETS, "MAIL_SERVER": "127.0.0.1"}
    with migrated_database(project, production) as created:
        yield created


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with outside_pytest_tmp("template-redis-") as folder, redis_server(folder) as server:
        yield server


def environment(database: Databases, storage_uri: str, **settings: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database.url,
        **SECRETS,
        "LOGIN_LIMIT_STORAGE_URI": storage_uri,
        "LOGIN_FAILURES_PER_EMAIL": f"{FAILURES_ALLOWED}/15 minutes",
        # E-mails go nowhere: a closed port fails at once.
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "9",
        **settings,
    }


@pytest.fixture(scope="module")
def instances(
    project: Project,
    database: Databases,
    redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Service]]:
    logs = tmp_path_factory.mktemp("instances")
    with ExitStack() as stack:
        services = [
            stack.enter_context(
                serve(project, environment(database, redis.uri, **settings), logs / f"{number}.log")
            )
            for number, settings in enumerate([{"WEB_CONCURRENCY": "2"}, {}, {}])
        ]
        yield services
    for service in services:
        assert_no_unhandled_errors(service)


@pytest.fixture
def running(redis: RedisServer) -> Iterator[RedisServer]:
    """Redis, running again at the end whatever the test did to it."""
    try:
        yield redis
    finally:
        redis.start()


def post(service: Service, path: str, **kwargs: Any) -> httpx.Response:
    """On a connection of its own: the kernel spreads them over a service's workers."""
    return httpx.post(f"{service.base_url}{path}", timeout=CLIENT_TIMEOUT_SECONDS, **kwargs)


def get(service: Service, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(f"{service.base_url}{path}", headers=headers, timeout=CLIENT_TIMEOUT_SECONDS)


def tracebacks(service: Service) -> list[str]:
    """The messages logged with a traceback, but the e-mails' (sent to a closed port)."""
    records = [json.loads(line) for line in service.output().splitlines() if line.startswith("{")]
    return [
        record["message"]
        for record in records
        if "exception" in record and record["logger"] != "app.core.email"
    ]


def register(service: Service) -> str:
    email = f"user-{secrets.token_hex(6)}@example.com"
    response = post(service, "/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


def log_in(service: Service, email: str, password: str = PASSWORD) -> httpx.Response:
    return post(service, "/api/auth/login", data={"username": email, "password": password})


def test_failed_logins_spread_over_instances_are_counted_once(
    instances: list[Service], redis: RedisServer
) -> None:
    email = register(instances[0])

    # One failure on each instance: the three together use up the limit...
    for service in instances[:FAILURES_ALLOWED]:
        assert log_in(service, email, "wrong-Password-1").status_code == 400
    # ...so the next attempt is refused everywhere, as on one instance, the right password too.
    for service in [*instances, instances[0], instances[0]]:
        response = log_in(service, email)
        assert response.status_code == 429, response.text
        assert response.json()["detail"]["code"] == "LOGIN_TOO_MANY_FAILURES"
    # Counted under a keyed hash of the address: Redis never holds the e-mail.
    keys = redis.keys()
    assert any("/email/" in key for key in keys), keys
    assert not [key for key in keys if email in key or email.split("@")[0] in key]


def test_a_token_from_one_instance_works_on_all_and_logout_on_one_revokes_it_on_all(
    instances: list[Service],
) -> None:
    email = register(instances[2])
    login = log_in(instances[1], email)
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    for service in [*instances, instances[0]]:
        response = get(service, "/api/users/me", headers)
        assert response.status_code == 200, response.text
        assert response.json()["email"] == email

    assert post(instances[2], "/api/auth/logout", headers=headers).status_code == 204
    for service in [*instances, instances[0]]:
        assert get(service, "/api/users/me", headers).status_code == 401


def test_while_redis_is_down_logins_answer_503_and_nothing_else_is_affected(
    instances: list[Service], running: RedisServer
) -> None:
    email = register(instances[0])
    login = log_in(instances[0], email)
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

    running.stop()

    for service in instances:
        refused = log_in(service, email)
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "5"
        assert refused.json()["detail"]["code"] == "LOGIN_LIMIT_UNAVAILABLE"
        assert get(service, "/api/users/me", headers).status_code == 200
        assert get(service, "/api/health/ready").status_code == 200
        register(service)
        assert "LOGIN_LIMIT_STORAGE_URI does not answer" in service.output()
        assert tracebacks(service) == []

    running.start()

    for service in [*instances, instances[0]]:
        assert log_in(service, email).status_code == 200


def test_an_instance_starts_without_redis_names_the_setting_and_serves(
    project: Project, database: Databases, tmp_path: Path
) -> None:
    closed = f"async+redis://127.0.0.1:{free_port()}"
    with serve(project, environment(database, closed), tmp_path / "uvicorn.log") as service:
        email = register(service)
        assert log_in(service, email).status_code == 503
        assert get(service, "/api/health/ready").status_code == 200

    assert "The store of LOGIN_LIMIT_STORAGE_URI does not answer" in service.output()
    assert tracebacks(service) == []
    assert_no_unhandled_errors(service)
