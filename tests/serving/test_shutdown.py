"""Graceful shutdown and rolling restarts of the default render, with a real uvicorn.

SIGTERM: the ready check answers 503 while the process still serves, then the
port closes, requests in flight finish (a registration's e-mail is a job in
the queue, for the worker: tests/serving/test_jobs.py), the pool closes, and
the process exits 0 within the grace period. Two instances restarted one after
the other under steady load: not one request fails.
"""

import asyncio
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.clients import CLIENT_TIMEOUT_SECONDS, client, register_and_log_in
from tests.support.databases import Databases, admin_conninfo
from tests.support.ports import free_port
from tests.support.project import Project
from tests.support.service import (
    Service,
    assert_no_unhandled_errors,
    migrated_database,
    new_secret_keys,
    serve,
)
from tests.support.smtp_sink import Sink, smtp_sink

pytestmark = pytest.mark.database

DELAY_SECONDS = 2.0  # SHUTDOWN_DELAY_SECONDS: shorter than its default, for a quicker test
GRACE_SECONDS = 30.0  # SHUTDOWN_GRACE_SECONDS, its default
SECRETS = new_secret_keys()


@pytest.fixture(scope="module")
def database(project: Project) -> Iterator[Databases]:
    production = {"ENVIRONMENT": "production", **SECRETS, "MAIL_SERVER": "127.0.0.1"}
    with migrated_database(project, production) as created:
        yield created


@pytest.fixture
def sink() -> Iterator[Sink]:
    with smtp_sink() as running:
        yield running


def environment(database: Databases, sink: Sink) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database.url,
        **SECRETS,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(sink.port),
        "MAIL_STARTTLS": "false",
        "SHUTDOWN_DELAY_SECONDS": str(DELAY_SECONDS),
    }


def database_name(database: Databases) -> str:
    return database.url.rsplit("/", 1)[1].split("?", 1)[0]


def wait_for_lock_waiter(database: Databases) -> None:
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
    with psycopg.connect(admin_conninfo(), autocommit=True) as connection:
        for _ in range(int(CLIENT_TIMEOUT_SECONDS / 0.05)):
            if connection.execute(query, (database_name(database),)).fetchone() != (0,):
                return
            time.sleep(0.05)
    raise AssertionError("the request never waited for the lock")


def refuses_connections(service: Service) -> bool:
    try:
        httpx.get(f"{service.base_url}/api/health/live", timeout=1)
    except httpx.ConnectError:
        return True
    return False


def test_sigterm_drains_requests_then_exits_0(
    project: Project, database: Databases, sink: Sink, tmp_path: Path
) -> None:
    with serve(project, environment(database, sink), tmp_path / "uvicorn.log") as service:
        with client(service) as http:
            headers = register_and_log_in(http)
            created = http.post("/api/posts/", json={"title": "T", "body": "x"}, headers=headers)
            assert created.status_code == 201, created.text
            post = f"/api/posts/{created.json()['id']}"

        blocker = psycopg.connect(database.url)
        with closing(blocker), ThreadPoolExecutor(1) as thread:
            # A slow request: it waits for a lock a migration might hold.
            blocker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
            in_flight = thread.submit(
                httpx.get, f"{service.base_url}{post}", headers=headers, timeout=GRACE_SECONDS
            )
            wait_for_lock_waiter(database)
            # A registration just before: its e-mail is queued, not sent by the API.
            late = f"late-{secrets.token_hex(4)}@example.com"
            with client(service) as http:
                body = {"email": late, "password": "correct-Horse-battery-9"}
                assert http.post("/api/auth/register", json=body).status_code == 201

            service.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()

            # Still serving, but out of rotation.
            with client(service) as http:
                assert http.get("/api/health/ready").status_code == 503
                assert http.get("/api/health/live").status_code == 200
            # Then no new connection is taken, while the slow request is still in flight.
            while not refuses_connections(service):
                assert time.monotonic() - signalled < DELAY_SECONDS + 5, "the port stayed open"
                time.sleep(0.1)
            assert time.monotonic() - signalled >= DELAY_SECONDS
            assert not in_flight.done()

            blocker.commit()  # the lock goes: the slow request completes
            response = in_flight.result()
        assert response.status_code == 200, response.text

        assert service.process.wait(timeout=GRACE_SECONDS) == 0
        exited = time.monotonic()

    assert exited - signalled < GRACE_SECONDS
    # The API sent nothing: the e-mail waits in the queue for a worker.
    assert sink.received == []
    with psycopg.connect(database.url) as connection:
        queued = connection.execute(
            "SELECT count(*) FROM pgqueuer WHERE convert_from(payload, 'UTF8') LIKE %s",
            (f"%{late}%",),
        ).fetchone()
    assert queued == (1,)
    assert "Database connections closed" in service.output()
    with psycopg.connect(admin_conninfo(), autocommit=True) as connection:
        left = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database_name(database),)
        ).fetchone()
    assert left == (0,)
    assert_no_unhandled_errors(service)


# --- Rolling restart: two instances, one after the other, under steady load ---

LOAD_CLIENTS = 8
# How often the balancer asks each instance whether it is ready (a readiness probe).
PROBE_SECONDS = 0.2


@dataclass
class Balancer:
    """Round robin over the instances whose ready check says 200, as a load balancer does.

    A request refused before it was sent (the port closed: nothing reached the
    service) goes to the next instance; that is a retry, not a failure. Any
    other transport error, and any status but 200, is a failure. Without the
    shutdown delay (SHUTDOWN_DELAY_SECONDS=0) this test failed: a request sent
    on a kept-alive connection as uvicorn closed it got no answer
    ("Server disconnected without sending a response").
    """

    ports: list[int]
    ready: dict[int, bool] = field(default_factory=dict)
    answered: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    turn: int = 0

    def next_ready(self) -> int | None:
        for _ in self.ports:
            self.turn += 1
            port = self.ports[self.turn % len(self.ports)]
            if self.ready.get(port):
                return port
        return None

    async def probe(self, until: threading.Event) -> None:
        async with httpx.AsyncClient(timeout=1) as http:
            while not until.is_set():
                for port in self.ports:
                    try:
                        answer = await http.get(f"http://127.0.0.1:{port}/api/health/ready")
                        self.ready[port] = answer.status_code == 200
                    except httpx.TransportError:
                        self.ready[port] = False
                await asyncio.sleep(PROBE_SECONDS)

    async def load(self, headers: dict[str, str], until: threading.Event) -> None:
        while not all(self.ready.get(port) for port in self.ports):  # the first probes
            await asyncio.sleep(PROBE_SECONDS)
        async with httpx.AsyncClient(headers=headers, timeout=CLIENT_TIMEOUT_SECONDS) as http:
            while not until.is_set():
                port = self.next_ready()
                if port is None:
                    self.failures.append("no instance ready")
                    await asyncio.sleep(PROBE_SECONDS)
                    continue
                try:
                    response = await http.get(f"http://127.0.0.1:{port}/api/users/me")
                except httpx.ConnectError:
                    self.retries += 1
                    continue
                except httpx.TransportError as exc:
                    self.failures.append(f"{port}: {exc!r}")
                    continue
                if response.status_code == 200:
                    self.answered += 1
                else:
                    self.failures.append(f"{port}: {response.status_code} {response.text}")

    def run(self, headers: dict[str, str], until: threading.Event) -> None:
        async def everything() -> None:
            await asyncio.gather(
                self.probe(until), *(self.load(headers, until) for _ in range(LOAD_CLIENTS))
            )

        asyncio.run(everything())


def wait_until_ready(balancer: Balancer, port: int) -> None:
    deadline = time.monotonic() + 60
    while not balancer.ready.get(port):
        assert time.monotonic() < deadline, f"the instance on {port} never became ready"
        time.sleep(PROBE_SECONDS)


def test_rolling_restart_of_two_instances_under_load_fails_no_request(
    project: Project, database: Databases, sink: Sink, tmp_path: Path
) -> None:
    env = environment(database, sink)
    ports = [free_port(), free_port()]
    balancer = Balancer(ports)
    done = threading.Event()
    exit_codes: list[int | None] = []
    with ExitStack() as instances, ThreadPoolExecutor(1) as thread:
        running = [
            instances.enter_context(serve(project, env, tmp_path / f"{port}-0.log", port=port))
            for port in ports
        ]
        with client(running[0]) as http:
            headers = register_and_log_in(http)
        traffic = thread.submit(balancer.run, headers, done)
        try:
            for port in ports:
                wait_until_ready(balancer, port)
            for number, port in enumerate(ports):
                before = balancer.answered
                old = running[number]
                old.process.send_signal(signal.SIGTERM)
                exit_codes.append(old.process.wait(timeout=GRACE_SECONDS))
                assert_no_unhandled_errors(old)
                running[number] = instances.enter_context(
                    serve(project, env, tmp_path / f"{port}-1.log", port=port)
                )
                wait_until_ready(balancer, port)
                assert balancer.answered > before  # the load went on meanwhile
        finally:
            done.set()
            traffic.result()

    assert exit_codes == [0, 0]
    assert balancer.failures == []
    assert balancer.answered > 0
    # Out of rotation before its port closed: no request even met a closed port.
    assert balancer.retries == 0, balancer.retries
