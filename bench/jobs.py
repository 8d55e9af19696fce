"""The jobs' worker: throughput for a no-op job with 1 and 2 workers, and the delay
from enqueue to start. `uv run python -m bench.jobs` prints a Markdown table.

Apart from `python -m bench`, which measures requests: here the render's own worker
(`build_worker` in app/jobs/worker.py, PgQueuer underneath) runs a job that does
nothing, so what is counted is the queue's own cost: claiming, the log, the status.
Throughput: JOBS rows inserted in one statement, then 1 or 2 worker processes drain
the queue; wall time from their start (process start-up included, about a second
each) to the last exit. Delay: one worker waits; another connection enqueues one job
at a time and the job records when it starts (LISTEN/NOTIFY wakes the worker).
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from bench import project
from bench.__main__ import progress
from bench.database import DatabaseUnreachableError, connect, server_url
from bench.stats import Results
from tests.support.databases import fresh_databases
from tests.support.project import outside_pytest_tmp, project_env, snapshot_template

# Run inside the render, with its virtualenv: the worker as the project builds it.
PROBE = """
import asyncio, json, sys, time
from datetime import timedelta

import asyncpg
from pgqueuer import Queries
from pgqueuer.types import QueueExecutionMode

from app.core.config import settings
from app.db.session import database_for_command
from app.jobs.settings import JobSettings
from app.jobs.worker import build_worker
from commands.worker import queue_connection


async def drain() -> None:
    done = 0

    async def noop(job: object) -> None:
        nonlocal done
        done += 1

    async with database_for_command(settings) as database, queue_connection(settings) as queue:
        worker = build_worker(queue, database, JobSettings(), {"noop": noop}, {})
        await worker.queue.run(
            mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=0.2),
            batch_size=5, max_concurrent_tasks=10,
        )
    print(json.dumps({"done": done}))


async def delays(samples: int, url: str) -> None:
    started = asyncio.Event()
    stamps: list[float] = []

    async def noop(job: object) -> None:
        stamps.append(time.perf_counter())
        started.set()

    async with database_for_command(settings) as database, queue_connection(settings) as queue:
        worker = build_worker(queue, database, JobSettings(), {"noop": noop}, {})
        running = asyncio.create_task(worker.queue.run(dequeue_timeout=timedelta(seconds=30)))
        await asyncio.sleep(1)
        other = await asyncpg.connect(url)
        queries = Queries.from_asyncpg_connection(other)
        measured = []
        for _ in range(samples):
            started.clear()
            enqueued = time.perf_counter()
            await queries.enqueue("noop", None)
            await started.wait()
            measured.append((stamps[-1] - enqueued) * 1000)
            await asyncio.sleep(0.2)
        worker.shutdown()
        await running
        await other.close()
    print(json.dumps(measured))


if sys.argv[1] == "drain":
    asyncio.run(drain())
else:
    asyncio.run(delays(int(sys.argv[2]), sys.argv[3]))
"""


def plain(url: str) -> str:
    return url.replace("+asyncpg", "")


def throughput(folder: Path, url: str, jobs: int, workers: int) -> float:
    with psycopg.connect(plain(url), autocommit=True) as connection:
        connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        connection.execute(
            "INSERT INTO pgqueuer (priority, entrypoint, payload, status) "
            "SELECT 0, 'noop', NULL, 'queued' FROM generate_series(1, %s)",
            (jobs,),
        )
    env = project_env(ENVIRONMENT="development", DATABASE_URL=url, PYTHONPATH=str(folder))
    python = str(folder / ".venv" / "bin" / "python")
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [python, "-c", PROBE, "drain"], cwd=folder, env=env, stdout=subprocess.PIPE
        )
        for _ in range(workers)
    ]
    done = sum(json.loads(process.communicate()[0])["done"] for process in processes)
    elapsed = time.perf_counter() - started
    if done != jobs or any(process.returncode for process in processes):
        raise RuntimeError(f"{workers} worker(s) ran {done} of {jobs} jobs")
    return jobs / elapsed


def delays(folder: Path, url: str, samples: int) -> list[float]:
    with psycopg.connect(plain(url), autocommit=True) as connection:
        connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
    env = project_env(ENVIRONMENT="development", DATABASE_URL=url, PYTHONPATH=str(folder))
    python = str(folder / ".venv" / "bin" / "python")
    command = [python, "-c", PROBE, "delays", str(samples), plain(url)]
    output = subprocess.run(command, cwd=folder, env=env, check=True, capture_output=True)
    return [float(value) for value in json.loads(output.stdout)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jobs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--jobs", type=int, default=3000, help="no-op jobs per run (3000)")
    parser.add_argument("--samples", type=int, default=30, help="enqueue-to-start samples (30)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each throughput (3)")
    args = parser.parse_args(argv)
    try:
        connect(server_url())
    except DatabaseUnreachableError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results = Results()
    with outside_pytest_tmp("bench-jobs-") as folder, fresh_databases() as databases:
        template = snapshot_template(folder / "template")
        progress("rendering, installing and migrating the project")
        project.render_cli(template, folder / "service")
        project.sync(folder / "service")
        project.migrate(folder / "service", databases)
        for workers in (1, 2):
            for run in range(args.runs):
                progress(f"{args.jobs} no-op jobs, {workers} worker(s), run {run + 1}/{args.runs}")
                rate = throughput(folder / "service", databases.url, args.jobs, workers)
                results.add(f"No-op jobs, {workers} worker process(es)", "jobs/s", rate)
        progress(f"enqueue to start, {args.samples} jobs one at a time")
        results.extend(
            "Enqueue to start, 1 worker waiting",
            "ms",
            delays(folder / "service", databases.url, args.samples),
        )
    print(results.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
