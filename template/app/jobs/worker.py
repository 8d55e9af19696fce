"""The worker: runs the queued jobs and the schedules until it is told to stop.

It works on one asyncpg connection of its own, which LISTENs for new jobs:
that needs a session connection, so the worker connects to PostgreSQL itself,
never through PgBouncer's transaction pooling. Jobs are claimed with FOR
UPDATE SKIP LOCKED, so that workers never share one, and kept alive by
heartbeats: a job whose worker stopped beating for JOBS_VISIBILITY_TIMEOUT_SECONDS
(killed, cut off) is taken again. Stopping (`shutdown`) lets the running jobs
finish first.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial
from typing import cast

import asyncpg  # type: ignore[import-untyped]  # ships no types
from pgqueuer import PgQueuer
from pgqueuer.models import Job, Schedule, TracebackRecord
from sqlalchemy import make_url

from app.core.logging import request_id
from app.db.session import Database
from app.jobs.executor import JobExecutor, entrypoint
from app.jobs.registry import JobFunction
from app.jobs.settings import JobSettings
from app.observability.job_metrics import JOBS_OLDEST_READY_AGE, JOBS_READY

# How long the worker waits for a notification before it looks at the queue anyway.
POLL_INTERVAL = timedelta(seconds=5)
# How often the worker measures the queue and touches JOBS_LIVENESS_FILE.
WATCH_INTERVAL = 10.0
READY_JOBS = """
SELECT count(*) AS ready, coalesce(extract(epoch FROM now() - min(execute_after)), 0) AS age
FROM pgqueuer WHERE status = 'queued' AND execute_after <= now()
"""

UNKNOWN_JOBS = """
SELECT * FROM pgqueuer
WHERE status = 'queued' AND NOT entrypoint = ANY($1::text[])
  AND created < now() - $2::interval
"""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scheduled:
    """A function the worker runs on a cron schedule (`0 3 * * *`: daily at 03:00 UTC);
    one worker runs it, however many there are.
    """

    cron: str
    function: Callable[[Database], Awaitable[None]]


@dataclass
class Worker:
    queue: PgQueuer
    known: frozenset[str]
    settings: JobSettings

    async def run(self) -> None:
        sweeping = asyncio.create_task(self.fail_unknown_jobs_forever())
        watching = asyncio.create_task(self.watch_forever())
        try:
            await self.queue.run(
                dequeue_timeout=POLL_INTERVAL,
                batch_size=max(1, self.settings.JOBS_CONCURRENCY // 2),
                max_concurrent_tasks=self.settings.JOBS_CONCURRENCY,
                heartbeat_timeout=timedelta(seconds=self.settings.JOBS_VISIBILITY_TIMEOUT_SECONDS),
            )
        finally:
            sweeping.cancel()
            watching.cancel()

    async def watch_forever(self) -> None:
        while True:
            await self.watch()
            await asyncio.sleep(WATCH_INTERVAL)

    async def watch(self) -> None:
        """Measure the jobs waiting to run, and show that the worker is alive: its loop
        turns and its connection answers (JOBS_LIVENESS_FILE, for a liveness probe).
        """
        [row] = await self.queue.qm.queries.driver.fetch(READY_JOBS)
        JOBS_READY.set(cast(int, row["ready"]))
        JOBS_OLDEST_READY_AGE.set(float(cast(Decimal, row["age"])))
        if self.settings.JOBS_LIVENESS_FILE is not None:
            self.settings.JOBS_LIVENESS_FILE.touch()

    def shutdown(self) -> None:
        """Take no more jobs; `run` returns once the running ones are done."""
        self.queue.shutdown.set()

    async def fail_unknown_jobs_forever(self) -> None:
        interval = min(max(self.settings.JOBS_UNKNOWN_JOB_GRACE_SECONDS / 2, 1.0), 60.0)
        while True:
            await self.fail_unknown_jobs()
            await asyncio.sleep(interval)

    async def fail_unknown_jobs(self) -> int:
        """Fail the queued jobs no worker knows, with a message that names them: a job
        whose function was renamed or removed would otherwise wait forever.
        """
        driver = self.queue.qm.queries.driver
        grace = timedelta(seconds=self.settings.JOBS_UNKNOWN_JOB_GRACE_SECONDS)
        rows = await driver.fetch(UNKNOWN_JOBS, list(self.known), grace)
        jobs = [Job.model_validate(row) for row in rows]
        for job in jobs:
            message = f"No job is named {job.entrypoint!r} (renamed or removed?): failed, not run"
            logger.error("%s (job %s)", message, job.id)
            error = TracebackRecord(
                job_id=job.id,
                timestamp=job.updated,
                exception_type="UnknownJob",
                exception_message=message,
                traceback=message,
                additional_context=None,
            )
            await self.queue.qm.queries.log_jobs([(job, "failed", error)])
        return len(jobs)


async def connect(url: str, application_name: str) -> asyncpg.Connection:
    """An asyncpg connection of its own to the database at `url` (a DATABASE_URL), read
    as the app's engine reads it: a socket folder in its `host` query parameter included
    (the local PostgreSQL's), which asyncpg's own URL parsing would pass over.
    """
    parsed = make_url(url)
    arguments: dict[str, object] = parsed.translate_connect_args(username="user")
    arguments.update(parsed.query)
    return await asyncpg.connect(
        **arguments, server_settings={"application_name": application_name}
    )


def build_worker(
    connection: asyncpg.Connection,
    database: Database,
    settings: JobSettings,
    jobs: Mapping[str, JobFunction],
    schedules: Mapping[str, Scheduled],
) -> Worker:
    """A worker for `jobs` and `schedules` on `connection`; `database` is the jobs'."""
    queue = PgQueuer.from_asyncpg_connection(connection)
    for name, function in jobs.items():
        queue.entrypoint(
            name, on_failure="hold", executor_factory=partial(JobExecutor, settings=settings)
        )(entrypoint(function, database))
    for name, scheduled in schedules.items():
        queue.schedule(name, scheduled.cron)(scheduled_run(name, scheduled, database))
    return Worker(queue, frozenset(jobs), settings)


def scheduled_run(
    name: str, scheduled: Scheduled, database: Database
) -> Callable[[Schedule], Awaitable[None]]:
    async def run(schedule: Schedule) -> None:
        token = request_id.set(f"schedule {name}")
        try:
            await scheduled.function(database)
        finally:
            request_id.reset(token)

    return run
