"""Running the queued jobs inside the test, as the worker would: how to test a job.

A test makes the request (or calls the code) that enqueues, then runs what is
queued in its own transaction with `run_queued_jobs`, and checks the outcome.
The worker's own machinery (claiming, retries) is PgQueuer's, tested there and
by the template's tests with real workers.
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker

from app.db.session import Database
from app.jobs.queue import JobRun, decode
from app.jobs.registry import JOBS

QUEUED = text(
    "SELECT id, entrypoint, payload, attempts FROM pgqueuer WHERE status = 'queued' ORDER BY id"
)
DONE = text("DELETE FROM pgqueuer WHERE id = :id")


async def queued_jobs(connection: AsyncConnection) -> list[tuple[str, dict[str, object]]]:
    """The name and arguments of each queued job, oldest first."""
    rows = (await connection.execute(QUEUED)).all()
    return [(row.entrypoint, decode(row.payload)) for row in rows]


async def run_queued_jobs(connection: AsyncConnection) -> list[int]:
    """Run each queued job once, in the test's transaction; the ids of those run."""
    database = Database(
        connection.engine,
        async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        ),
    )
    ran = []
    for row in (await connection.execute(QUEUED)).all():
        run = JobRun(row.id, row.entrypoint, decode(row.payload), row.attempts + 1, database)
        await JOBS[row.entrypoint](run)
        await connection.execute(DONE, {"id": row.id})
        ran.append(row.id)
    return ran
