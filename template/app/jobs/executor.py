"""How the worker runs one job: its retries, its failure, and what they record.

A failed run is retried after a delay that doubles with each attempt, less a
random part of up to half (jitter: jobs that failed together, on a mail server
that was down, do not all retry at the same moment), up to JOBS_MAX_ATTEMPTS
runs. Then the job is kept as failed, with its error, for `commands.jobs` to
list and retry, and reported to Sentry when SENTRY_DSN is set.

What the queue keeps of an error is what the logs would show: database errors
described without the values they quote (app/core/redaction.py).
"""

import dataclasses
import logging
import random
from datetime import timedelta

import sentry_sdk
from opentelemetry import propagate, trace
from pgqueuer import RetryRequested
from pgqueuer.executors import AsyncEntrypoint, EntrypointExecutor
from pgqueuer.models import Context, Job

from app.core.logging import request_id
from app.core.redaction import describe, format_exception
from app.db.session import Database
from app.jobs.queue import JobRun, decode
from app.jobs.registry import JobFunction
from app.jobs.settings import JobSettings
from app.observability.job_metrics import JOBS_FAILED, JOBS_RETRIED, JOBS_SUCCEEDED

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


class JobFailedError(Exception):
    """A job out of attempts; its message is the last error, as the logs show it."""


def retry_delay(attempt: int, settings: JobSettings) -> timedelta:
    """The wait after the failed run number `attempt` (1 for the first run)."""
    full = min(
        settings.JOBS_RETRY_DELAY_SECONDS * 2 ** (attempt - 1),
        settings.JOBS_RETRY_MAX_DELAY_SECONDS,
    )
    # Not for security: spreads retries in time.
    return timedelta(seconds=full * random.uniform(0.5, 1.0))  # noqa: S311


def entrypoint(function: JobFunction, database: Database) -> AsyncEntrypoint:
    """`function` as PgQueuer calls it: with PgQueuer's job, made into a JobRun."""

    async def run(job: Job) -> None:
        await function(
            JobRun(
                id=int(job.id),
                name=job.entrypoint,
                args=decode(job.payload),
                attempt=job.attempts + 1,
                database=database,
            )
        )

    return run


@dataclasses.dataclass
class JobExecutor(EntrypointExecutor):
    """PgQueuer's executor for one job, with this service's retries."""

    settings: JobSettings

    async def execute(self, job: Job, context: Context) -> None:
        # Every log line of the run says which job it is, where a request's id goes; its
        # span belongs to the trace of the request that enqueued it.
        token = request_id.set(f"job {job.entrypoint} {job.id}")
        headers = {key: str(value) for key, value in (job.headers or {}).items()}
        attributes: dict[str, str | int] = {
            "job.name": job.entrypoint,
            "job.id": int(job.id),
            "job.attempt": job.attempts + 1,
        }
        try:
            with tracer.start_as_current_span(
                f"job {job.entrypoint}",
                context=propagate.extract(headers),
                kind=trace.SpanKind.CONSUMER,
                attributes=attributes,
            ):
                await self.run(job, context)
        finally:
            request_id.reset(token)

    async def run(self, job: Job, context: Context) -> None:
        try:
            await super().execute(job, context)
        except Exception as exc:  # noqa: BLE001 (any error of the job is a failed run)
            attempt = job.attempts + 1
            if attempt < self.settings.JOBS_MAX_ATTEMPTS:
                delay = retry_delay(attempt, self.settings)
                logger.warning(
                    "Attempt %d of %d failed, next in %.1f s: %s: %s",
                    attempt,
                    self.settings.JOBS_MAX_ATTEMPTS,
                    delay.total_seconds(),
                    type(exc).__name__,
                    describe(exc),
                )
                JOBS_RETRIED.labels(job.entrypoint).inc()
                raise RetryRequested(delay=delay, reason=describe(exc)) from None
            JOBS_FAILED.labels(job.entrypoint).inc()
            sentry_sdk.capture_exception(exc)
            raise JobFailedError(
                f"{job.entrypoint} failed {attempt} times; the last error:\n{format_exception(exc)}"
            ) from None
        JOBS_SUCCEEDED.labels(job.entrypoint).inc()
