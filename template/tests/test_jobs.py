"""Background jobs: enqueued with the request's transaction, run by the worker, retried,
failed and retried again by `commands.jobs`.

The e-mail tests are also the pattern for a job of your own: make the request,
then run what it queued (tests/jobs.py) and check the outcome.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # ships no types
import pytest
from httpx import AsyncClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pgqueuer import Queries
from pgqueuer.types import QueueExecutionMode
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core import email
from app.db.session import Database
from app.jobs import emails, executor
from app.jobs.executor import retry_delay
from app.jobs.queue import JobArgumentsError, JobRun, enqueue
from app.jobs.settings import JobSettings, load_job_settings
from app.jobs.worker import build_worker, connect
from commands import jobs as jobs_command
from commands import worker as worker_command
from tests.database import TEST_DATABASE_URL
from tests.factories import DEFAULT_PASSWORD, create_user
from tests.jobs import queued_jobs, run_queued_jobs
from tests.outbox import Outbox

# Fast retries, so that a job fails for good within the test.
FAST = JobSettings(
    JOBS_MAX_ATTEMPTS=2,
    JOBS_RETRY_DELAY_SECONDS=0.05,
    JOBS_RETRY_MAX_DELAY_SECONDS=0.05,
    JOBS_UNKNOWN_JOB_GRACE_SECONDS=0,
)


async def test_registration_enqueues_one_verification_email(
    client: AsyncClient, connection: AsyncConnection
) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": "new@example.com", "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 201
    [(name, args)] = await queued_jobs(connection)
    assert (name, args["to"], args["user_id"]) == (
        emails.SEND_VERIFICATION_EMAIL,
        "new@example.com",
        str(response.json()["id"]),
    )


async def test_a_rolled_back_transaction_leaves_no_job(
    session: AsyncSession, connection: AsyncConnection
) -> None:
    user = await create_user(session)
    await emails.enqueue_verification_email(session, user, "token")
    await session.rollback()

    assert await queued_jobs(connection) == []


async def test_the_job_sends_the_mail_with_a_message_id_of_its_own(
    client: AsyncClient, connection: AsyncConnection, outbox: Outbox
) -> None:
    await client.post(
        "/api/auth/register", json={"email": "new@example.com", "password": DEFAULT_PASSWORD}
    )
    [job_id] = await run_queued_jobs(connection)

    [message] = await outbox.messages()

    assert message["To"] == "new@example.com"
    assert message["Message-ID"] == emails.message_id(job_id)
    assert await queued_jobs(connection) == []


async def test_a_failed_send_names_the_user_by_id_not_by_address(
    monkeypatch: pytest.MonkeyPatch, app_database: Database
) -> None:
    async def refuse(message: EmailMessage) -> None:
        raise ConnectionRefusedError(f"cannot reach the server for {message['To']}")

    monkeypatch.setattr(email, "send_email", refuse)
    args = {"user_id": "42", "to": "ann@example.com", "token": "secret-token"}
    run = JobRun(7, emails.SEND_PASSWORD_RESET_EMAIL, args, 1, app_database)

    with pytest.raises(emails.EmailNotSentError) as raised:
        await emails.send_password_reset_email(run)

    assert "to user 42" in str(raised.value)
    assert "ann@example.com" not in str(raised.value)
    assert "secret-token" not in str(raised.value)


async def test_unserialisable_arguments_are_refused_at_enqueue(session: AsyncSession) -> None:
    with pytest.raises(JobArgumentsError, match=r"'export'.*JSON"):
        await enqueue(session, "export", {"since": datetime.now(UTC)})


def test_retry_delays_grow_with_jitter_up_to_the_maximum() -> None:
    settings = JobSettings(JOBS_RETRY_DELAY_SECONDS=10, JOBS_RETRY_MAX_DELAY_SECONDS=60)

    delays = [retry_delay(attempt, settings) for attempt in (1, 2, 3, 10)]

    assert timedelta(seconds=5) <= delays[0] <= timedelta(seconds=10)
    assert timedelta(seconds=10) <= delays[1] <= timedelta(seconds=20)
    assert timedelta(seconds=20) <= delays[2] <= timedelta(seconds=40)
    assert timedelta(seconds=30) <= delays[3] <= timedelta(seconds=60)


@pytest.fixture
async def queue_connection(app_database: Database) -> AsyncIterator[asyncpg.Connection]:
    """A worker's connection to the test database, whose jobs commit for real; emptied after."""
    connection = await connect(TEST_DATABASE_URL.render_as_string(hide_password=False), "tests")
    yield connection
    await connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
    await connection.close()


async def test_a_failing_job_is_retried_then_failed_listed_and_retried(
    queue_connection: asyncpg.Connection, app_database: Database
) -> None:
    runs: list[int] = []

    async def always_fails(run: JobRun) -> None:
        runs.append(run.attempt)
        raise RuntimeError("the export service is down")

    worker = build_worker(queue_connection, app_database, FAST, {"export": always_fails}, {})
    queries = Queries.from_asyncpg_connection(queue_connection)
    [job_id] = await queries.enqueue("export", b"{}")

    await worker.queue.run(mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=0.1))

    assert runs == [1, 2]
    [listed] = await jobs_command.list_failed(queries)
    assert listed.startswith(f"{job_id} export")
    assert "export failed 2 times" in listed
    assert "RuntimeError: the export service is down" in listed
    assert await jobs_command.retry(queries, [job_id]) == 1
    assert await jobs_command.list_failed(queries) == []
    assert [job.status for job in await queries.queue_size()] == ["queued"]


async def test_a_job_no_worker_knows_is_failed_with_its_name(
    queue_connection: asyncpg.Connection, app_database: Database
) -> None:
    worker = build_worker(queue_connection, app_database, FAST, {}, {})
    queries = Queries.from_asyncpg_connection(queue_connection)
    [job_id] = await queries.enqueue("removed_last_release", b"{}")

    assert await worker.fail_unknown_jobs() == 1

    [listed] = await jobs_command.list_failed(queries)
    assert listed.startswith(f"{job_id} removed_last_release")
    assert "No job is named 'removed_last_release'" in listed


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_job_runs_in_a_span_of_the_trace_that_enqueued_it_and_is_counted(
    queue_connection: asyncpg.Connection, app_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(__name__)
    monkeypatch.setattr(executor, "tracer", tracer)
    runs: list[JobRun] = []

    async def remember(run: JobRun) -> None:
        runs.append(run)

    enqueued, succeeded = (
        sample("jobs_enqueued_total", job="noop"),
        sample("jobs_succeeded_total", job="noop"),
    )
    worker = build_worker(queue_connection, app_database, FAST, {"noop": remember}, {})
    async with app_database.sessions() as session:
        with tracer.start_as_current_span("POST /api/things") as request:
            job_id = await enqueue(session, "noop", {"thing": 1})
        await session.commit()

    await worker.queue.run(mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=0.1))

    [run] = runs
    assert (run.id, run.args, run.attempt) == (job_id, {"thing": 1}, 1)
    [span] = [span for span in exporter.get_finished_spans() if span.name == "job noop"]
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id
    assert dict(span.attributes or {}) == {"job.name": "noop", "job.id": job_id, "job.attempt": 1}
    assert sample("jobs_enqueued_total", job="noop") == enqueued + 1
    assert sample("jobs_succeeded_total", job="noop") == succeeded + 1


async def test_the_worker_measures_the_ready_jobs_and_shows_it_is_alive(
    queue_connection: asyncpg.Connection, app_database: Database, tmp_path: Path
) -> None:
    alive = tmp_path / "alive"
    settings = FAST.model_copy(update={"JOBS_LIVENESS_FILE": alive})
    worker = build_worker(queue_connection, app_database, settings, {}, {})
    queries = Queries.from_asyncpg_connection(queue_connection)
    await queries.enqueue(["a", "b"], [None, None], [0, 0])
    await queries.enqueue("later", None, execute_after=timedelta(hours=1))

    await worker.watch()

    assert sample("jobs_ready") == 2
    assert sample("jobs_oldest_ready_age_seconds") >= 0
    assert alive.exists()


def test_a_bad_job_setting_stops_the_worker_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBS_MAX_ATTEMPTS", "0")

    with pytest.raises(SystemExit) as stopped:
        load_job_settings()

    assert "JOBS_MAX_ATTEMPTS: Input should be greater than or equal to 1" in str(stopped.value)
    assert "Traceback" not in str(stopped.value)


async def test_the_job_history_is_pruned_but_for_failed_jobs(
    queue_connection: asyncpg.Connection, app_database: Database
) -> None:
    queries = Queries.from_asyncpg_connection(queue_connection)
    [failed] = await queries.enqueue("kept", None)
    await queue_connection.execute("UPDATE pgqueuer SET status = 'failed'")
    log = (
        "INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, created)"
        " VALUES ($1, $2, 0, $3, now() - $4::interval)"
    )
    old, recent = timedelta(days=31), timedelta(days=1)
    await queue_connection.execute(log, 1_000_000, "successful", "done", old)
    await queue_connection.execute(log, 1_000_001, "successful", "done", recent)
    await queue_connection.execute(log, failed, "failed", "kept", old)

    await worker_command.prune_job_history(app_database)

    left = await queue_connection.fetch("SELECT job_id FROM pgqueuer_log")
    assert {row["job_id"] for row in left} == {failed, 1_000_001}
