"""Background jobs with real processes: the default render's API and workers, a real
PostgreSQL and a local SMTP server that keeps what it receives.

A crash of the API loses no e-mail; two workers run each of 200 jobs once; a job that
always fails is retried with growing delays, then failed, listed and retried by the
command; SIGTERM to a worker in the middle of a slow job lets it finish, once.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.support.clients import PASSWORD, client
from tests.support.databases import Databases
from tests.support.ports import free_port
from tests.support.project import Project, project_env
from tests.support.service import in_process_group, migrated_database, new_secret_keys, serve
from tests.support.smtp_sink import Sink, smtp_sink

pytestmark = pytest.mark.database

SECRETS = new_secret_keys()
# How long a test waits for what must happen before it calls it a failure.
PATIENCE_SECONDS = 60.0
Process = subprocess.Popen[bytes]
MESSAGE_ID = re.compile(r"^Message-ID: (\S+)", re.MULTILINE | re.IGNORECASE)


@pytest.fixture(scope="module")
def database(project: Project) -> Iterator[Databases]:
    # Production needs a mail server named even to migrate: the worker's tests name theirs.
    settings = {"ENVIRONMENT": "production", "MAIL_SERVER": "127.0.0.1", **SECRETS}
    with migrated_database(project, settings) as created:
        yield created


@pytest.fixture(autouse=True)
def empty_queue(database: Databases) -> None:
    with psycopg.connect(database.url) as connection:
        connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")


def environment(database: Databases, mail_port: int, **extra: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database.url,
        **SECRETS,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(mail_port),
        "MAIL_STARTTLS": "false",
        "MAIL_TIMEOUT_SECONDS": "2",
        **extra,
    }


@contextlib.contextmanager
def worker(project: Project, env: Mapping[str, str], log: Path) -> Iterator[Process]:
    """`python -m commands.worker` in a process group of its own; killed if left running."""
    command = [str(project.path / ".venv" / "bin" / "python"), "-m", "commands.worker"]
    with in_process_group(command, project.path, project_env(**env), log) as process:
        yield process


def stop(process: Process) -> int:
    """SIGTERM, as a deployment stops a worker; its exit status."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=PATIENCE_SECONDS)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def query(database: Databases, sql: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(database.url) as connection:
        return connection.execute(sql, args).fetchall()


def message_ids(sink: Sink) -> list[str]:
    return [match.group(1) for _, message in sink.received if (match := MESSAGE_ID.search(message))]


def enqueue_verification_emails(database: Databases, count: int) -> None:
    """`count` e-mail jobs, as registrations would enqueue them."""
    rows = [
        (
            "send_verification_email",
            json.dumps({"user_id": str(n), "to": f"u{n}@example.com", "token": "t"}).encode(),
        )
        for n in range(count)
    ]
    with psycopg.connect(database.url) as connection, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO pgqueuer (priority, entrypoint, payload, status)"
            " VALUES (0, %s, %s, 'queued')",
            rows,
        )


def test_an_api_killed_after_registering_while_mail_is_down_loses_no_mail(
    project: Project, database: Databases, tmp_path: Path
) -> None:
    mail_port = free_port()  # nothing listens there: the mail server is down
    env = environment(database, mail_port)
    with serve(project, env, tmp_path / "uvicorn.log") as service:
        with client(service) as http:
            body = {"email": "crash@example.com", "password": PASSWORD}
            assert http.post("/api/auth/register", json=body).status_code == 201
        time.sleep(1)
        os.killpg(service.process.pid, signal.SIGKILL)

    with smtp_sink(mail_port) as sink, worker(project, env, tmp_path / "worker.log") as process:
        wait_for(lambda: query(database, "SELECT count(*) FROM pgqueuer") == [(0,)], "sent")
        assert stop(process) == 0

    [(_, message)] = sink.received
    assert "To: crash@example.com" in message
    assert message_ids(sink)


def test_two_workers_run_each_of_200_jobs_once(
    project: Project, database: Databases, tmp_path: Path
) -> None:
    enqueue_verification_emails(database, 200)
    with smtp_sink() as sink:
        env = environment(database, sink.port)
        with (
            worker(project, env, tmp_path / "worker-1.log") as first,
            worker(project, env, tmp_path / "worker-2.log") as second,
        ):
            wait_for(lambda: len(sink.received) >= 200, "200 mails")
            assert (stop(first), stop(second)) == (0, 0)

    ids = message_ids(sink)
    assert len(ids) == 200
    assert len(set(ids)) == 200
    assert query(database, "SELECT count(*) FROM pgqueuer") == [(0,)]
    # Both took their share.
    for log in ("worker-1.log", "worker-2.log"):
        assert "Sent 'Confirm your e-mail address" in (tmp_path / log).read_text()


def parse_delay(text: str) -> timedelta:
    hours, minutes, seconds = text.split(":")
    return timedelta(hours=int(hours), minutes=int(minutes), seconds=float(seconds))


def test_a_job_that_always_fails_is_retried_later_each_time_then_failed_listed_and_retried(
    project: Project, database: Databases, tmp_path: Path
) -> None:
    enqueue_verification_emails(database, 1)
    retries = {"JOBS_MAX_ATTEMPTS": "3", "JOBS_RETRY_DELAY_SECONDS": "0.4"}
    env = environment(database, free_port(), **retries)  # the mail server stays down
    with worker(project, env, tmp_path / "worker.log") as process:
        failed = "SELECT count(*) FROM pgqueuer WHERE status = 'failed'"
        wait_for(lambda: query(database, failed) == [(1,)], "failed")
        assert stop(process) == 0

    retried = query(
        database,
        "SELECT created, traceback->'additional_context'->>'retry_delay' FROM pgqueuer_log"
        " WHERE status = 'queued' ORDER BY created",
    )
    [(failed_at,)] = query(database, "SELECT created FROM pgqueuer_log WHERE status = 'failed'")
    delays = [parse_delay(str(text)) for _, text in retried]
    assert len(delays) == 2
    assert timedelta(seconds=0.2) <= delays[0] <= timedelta(seconds=0.4)
    assert timedelta(seconds=0.4) <= delays[1] <= timedelta(seconds=0.8)
    # Each run waited its delay after the one before.
    assert retried[1][0] - retried[0][0] >= delays[0]
    assert failed_at - retried[1][0] >= delays[1]

    def jobs_command(*args: str) -> str:
        return project.run("uv", "run", "--locked", "python", "-m", "commands.jobs", *args, env=env)

    listed = jobs_command("list")
    assert "send_verification_email" in listed
    assert "failed 3 times" in listed
    assert "Could not send 'Confirm your e-mail address" in listed
    assert "u0@example.com" not in listed
    assert "1 job(s) queued again." in jobs_command("retry", "--all")
    assert query(database, "SELECT status::text, attempts FROM pgqueuer") == [("queued", 0)]


def test_sigterm_to_a_worker_in_a_slow_job_lets_it_finish_once(
    project: Project, database: Databases, tmp_path: Path
) -> None:
    enqueue_verification_emails(database, 1)
    with smtp_sink() as sink:
        sink.delay = 3.0  # the mail server answers slowly: the job takes a while
        env = environment(
            database, sink.port, MAIL_TIMEOUT_SECONDS="30", JOBS_VISIBILITY_TIMEOUT_SECONDS="2"
        )
        with worker(project, env, tmp_path / "worker-1.log") as first:
            picked = "SELECT count(*) FROM pgqueuer WHERE status = 'picked'"
            wait_for(lambda: query(database, picked) == [(1,)], "picked")
            # Another worker meanwhile, while the job runs: it must not take it.
            with worker(project, env, tmp_path / "worker-2.log") as second:
                first.send_signal(signal.SIGTERM)
                assert first.wait(timeout=PATIENCE_SECONDS) == 0
                assert query(database, "SELECT count(*) FROM pgqueuer") == [(0,)]
                time.sleep(3)  # longer than the visibility timeout: a second run would show
                assert stop(second) == 0

    assert len(sink.received) == 1
