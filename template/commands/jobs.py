"""Failed jobs: `python -m commands.jobs list`, and `retry ID...` or `retry --all`.

A job that failed JOBS_MAX_ATTEMPTS times is kept, with its last error, until
someone looks: `list` shows them, `retry` queues them again for a fresh set of
attempts (after the cause is fixed: the mail server is back, the bug deployed).
"""

import argparse
import asyncio
import sys
import textwrap
from typing import cast

from pgqueuer import JobId, Queries

from app.core.config import settings
from app.core.logging import configure_logging
from commands.worker import queue_connection

LAST_ERRORS = """
SELECT DISTINCT ON (job_id) job_id, traceback->>'exception_message' AS error
FROM pgqueuer_log WHERE job_id = ANY($1::bigint[]) AND status = 'failed'
ORDER BY job_id, created DESC
"""
FAILED_IDS = "SELECT id FROM pgqueuer WHERE status = 'failed' ORDER BY id"


async def list_failed(queries: Queries) -> list[str]:
    """One paragraph per failed job: its id, name, attempts, when, and its last error."""
    jobs = await queries.list_failed_jobs(limit=1000, order="ASC")
    rows = await queries.driver.fetch(LAST_ERRORS, [job.id for job in jobs])
    errors = {row["job_id"]: row["error"] for row in rows}
    return [
        f"{job.id} {job.entrypoint} (failed {job.updated:%Y-%m-%d %H:%M:%S %Z})\n"
        + textwrap.indent(str(errors.get(job.id, "")), "    ")
        for job in jobs
    ]


async def retry(queries: Queries, ids: list[int] | None) -> int:
    """Queue the failed jobs among `ids` (None: all of them) again; how many."""
    failed = [cast(int, row["id"]) for row in await queries.driver.fetch(FAILED_IDS)]
    chosen = [JobId(job_id) for job_id in failed if ids is None or job_id in ids]
    await queries.requeue_jobs(chosen)
    return len(chosen)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m commands.jobs", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the failed jobs with their last error")
    retrying = commands.add_parser("retry", help="queue failed jobs again")
    retrying.add_argument("ids", nargs="*", type=int, metavar="ID")
    retrying.add_argument("--all", action="store_true", help="every failed job")
    args = parser.parse_args(argv)
    if args.command == "retry" and bool(args.ids) == args.all:
        parser.error("retry: give the ids of failed jobs, or --all")
    async with queue_connection(settings) as connection:
        queries = Queries.from_asyncpg_connection(connection)
        if args.command == "list":
            failed = await list_failed(queries)
            print("\n".join(failed) if failed else "No failed jobs.")
        else:
            count = await retry(queries, None if args.all else args.ids)
            print(f"{count} job(s) queued again.")
    return 0


if __name__ == "__main__":
    configure_logging(settings.LOG_LEVEL, settings.log_format)
    sys.exit(asyncio.run(main(sys.argv[1:])))
