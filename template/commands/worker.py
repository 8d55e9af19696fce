"""Run the background jobs: `uv run python -m commands.worker`, beside the API.

A process of its own (run one or more, anywhere they reach PostgreSQL): the
API only enqueues. SIGTERM or Ctrl+C stops it gracefully: it takes no more
jobs, lets the running ones finish, and exits 0. A worker killed outright
loses nothing: its jobs run again after JOBS_VISIBILITY_TIMEOUT_SECONDS.

Connect it to PostgreSQL itself (DATABASE_URL), not through PgBouncer's
transaction pooling: it LISTENs for new jobs, which needs a session connection.
"""

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]  # ships no types
from prometheus_client import start_http_server
from sqlalchemy import text

import app.db.base  # noqa: F401 (every model: relationships resolve other models by name)
from app.core.config import Settings, settings
from app.core.logging import configure_logging
from app.db.session import Database, database_for_command, database_url
from app.jobs.registry import JOBS
from app.jobs.settings import load_job_settings
from app.jobs.worker import Scheduled, build_worker, connect
from commands.prune_logins import prune

logger = logging.getLogger("commands.worker")


async def prune_logins(database: Database) -> None:
    deleted = await prune(database.sessions)
    logger.info("Deleted %d expired or ended login rows", deleted)


# How long the queue keeps the history of finished jobs (PgQueuer's log and statistics).
JOB_HISTORY = timedelta(days=30)
# Jobs still in the queue (failed ones, waiting for `commands.jobs retry`) keep theirs.
PRUNE_JOB_HISTORY = (
    text(
        "DELETE FROM pgqueuer_log WHERE created < now() - CAST(:age AS interval)"
        " AND job_id NOT IN (SELECT id FROM pgqueuer)"
    ),
    text("DELETE FROM pgqueuer_statistics WHERE created < now() - CAST(:age AS interval)"),
)


async def prune_job_history(database: Database) -> None:
    """PgQueuer keeps a log row per job run and never deletes one: without this, the log
    grows by every job for ever.
    """
    async with database.sessions() as session:
        for statement in PRUNE_JOB_HISTORY:
            await session.execute(statement, {"age": JOB_HISTORY})
        await session.commit()


# What the worker runs on a schedule, by name (the name is what PostgreSQL stores).
SCHEDULES = {
    "prune_logins": Scheduled("17 3 * * *", prune_logins),
    "prune_job_history": Scheduled("47 3 * * *", prune_job_history),
}


@asynccontextmanager
async def queue_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the worker's own, to the database of DATABASE_URL."""
    connection = await connect(database_url(settings), f"{settings.PROJECT_NAME} worker")
    try:
        yield connection
    finally:
        await connection.close()


async def main() -> None:
    job_settings = load_job_settings()
    if job_settings.JOBS_METRICS_PORT is not None:
        start_http_server(job_settings.JOBS_METRICS_PORT)
    async with database_for_command(settings) as database, queue_connection(settings) as queue:
        worker = build_worker(queue, database, job_settings, JOBS, SCHEDULES)
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop, worker.shutdown)
        logger.info("Worker started: jobs %s", ", ".join(sorted(JOBS)))
        await worker.run()
    logger.info("Worker stopped: its running jobs are done")


def run() -> None:
    """Configured as the API is (app/main.py): logs, then traces and error reports when set."""
    tracer_provider = None
    trace_id = None
    if settings.tracing_enabled:
        from app.observability.tracing import current_trace_id, start_tracing

        tracer_provider, trace_id = start_tracing(settings), current_trace_id
    configure_logging(settings.LOG_LEVEL, settings.log_format, trace_id)
    if settings.SENTRY_DSN is not None:
        from app.observability.error_reports import start_error_reports

        start_error_reports(
            settings.SENTRY_DSN.get_secret_value(),
            environment=settings.ENVIRONMENT,
            release=settings.SENTRY_RELEASE,
            secrets=settings.secret_values(),
        )
    asyncio.run(main())
    if tracer_provider is not None:
        tracer_provider.shutdown()  # Sends the spans still in its batch.


if __name__ == "__main__":
    run()
