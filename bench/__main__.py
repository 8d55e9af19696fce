"""`uv run python -m bench [--runs N] [--seconds S] [--no-instructions] [--no-matrix]
[--observability-only] [--output F]`.

Renders the template (working tree, default answers) into a temporary folder,
measures it, and prints the Markdown table of bench/README.md's "The latest table";
progress goes to stderr. Needs PostgreSQL (BENCH_DATABASE_URL, TEST_DATABASE_URL
or postgresql://postgres@127.0.0.1:5432/postgres), wrk, and valgrind unless
--no-instructions.
"""

import argparse
import json
import os
import platform
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from bench import instructions, load, project
from bench.database import DatabaseUnreachableError, connect, server_url
from bench.programs import ProgramMissingError
from bench.project import CommandFailedError
from bench.serving import Options, Serving
from bench.stats import Results
from tests.support.databases import fresh_databases
from tests.support.project import outside_pytest_tmp, snapshot_template


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of everything (3)")
    parser.add_argument(
        "--seconds", type=float, default=10, help="measured seconds per load run (10)"
    )
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per load run (2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--no-instructions",
        action="store_true",
        help="skip the instructions per request (valgrind's callgrind)",
    )
    parser.add_argument(
        "--no-matrix", action="store_true", help="skip the template's rendering matrix"
    )
    parser.add_argument(
        "--observability-only",
        action="store_true",
        help="measure only what metrics and tracing add to GET /api/users/me",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("bench-results.json"),
        help="JSON file with every measurement (bench-results.json)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--runs must be at least 1, --seconds above 0, --warmup at least 0")
    return args


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def production_workers() -> int:
    """What the rendered README recommends: one worker per core."""
    return os.cpu_count() or 1


def machine(database_version: str, service_python: str) -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "system": platform.platform(),
        "python": platform.python_version(),
        "python_of_the_service": service_python,
        "postgresql": database_version,
        "load_average_at_start": os.getloadavg(),
    }


def measure_projects(template: Path, folder: Path, runs: int, results: Results) -> None:
    """Render, copy to green and the rendered suite, `runs` times each."""
    for run_number in range(1, runs + 1):
        progress(f"copy to green, run {run_number}/{runs}")
        with fresh_databases() as databases:
            destination = folder / f"green-{run_number}"
            render = project.render_cli(template, destination)
            sync = project.sync(destination)
            migrate = project.migrate(destination, databases)
            suite = project.run_suite(destination, databases)
        in_process = project.render_in_process(template, folder / f"in-process-{run_number}")
        results.add("Render: `copier copy` (CLI, defaults)", "s", render)
        results.add("Render: copier's `run_copy` (in process)", "s", in_process)
        total = render + sync + migrate + suite.wall_seconds
        results.add("Copy to green: render, sync, migrate, suite", "s", total)
        results.add("… `uv sync --locked` (warm cache)", "s", sync)
        results.add("… `alembic upgrade head`", "s", migrate)
        results.add("Rendered suite: `uv run pytest` wall time", "s", suite.wall_seconds)
        results.add("Rendered suite: tests", "tests", suite.tests)
        results.add("Rendered suite: pytest's time per test", "ms", suite.ms_per_test)


def measure_serving(folder: Path, args: argparse.Namespace, results: Results) -> None:
    options = Options(
        seconds=args.seconds,
        warmup_seconds=args.warmup,
        threads=args.threads,
        connections=args.connections,
    )
    configurations = [("1 worker", 1)]
    if production_workers() > 1:
        configurations.append((f"{production_workers()} workers", production_workers()))
    with fresh_databases() as databases:
        serving = Serving(folder / "serving", databases, folder / "server.log", args.connections)
        serving.prepare()
        for run_number in range(1, args.runs + 1):
            if not args.observability_only:
                for name, workers in configurations:
                    progress(f"serving, {name}, run {run_number}/{args.runs}")
                    serving.run_configuration(name, workers, options, results, run_number)
                progress(f"serving, the reference points, run {run_number}/{args.runs}")
                serving.run_reference(options, results, run_number)
            progress(f"serving, metrics and tracing side by side, run {run_number}/{args.runs}")
            serving.run_observability(options, results, run_number)
        if not args.no_instructions:
            progress("instructions per request, under callgrind (one run)")
            dumps = folder / "callgrind"
            dumps.mkdir()
            if not args.observability_only:
                serving.count_instructions(dumps, results)
            serving.count_observability_instructions(dumps, results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        database_version = connect(server_url())
        load.wrk_path()
        if not args.no_instructions:
            instructions.valgrind_path()
    except (ProgramMissingError, DatabaseUnreachableError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    results = Results()
    started = datetime.now(UTC)
    with outside_pytest_tmp("bench-") as folder:
        template = snapshot_template(folder / "template")
        # The serving project's install also warms uv's cache for "copy to green".
        progress("rendering and installing the serving project")
        project.render_cli(template, folder / "serving")
        project.sync(folder / "serving")
        service_python = project.python_version(folder / "serving")
        if not args.observability_only:
            measure_projects(template, folder, args.runs, results)
        measure_serving(folder, args, results)
    if not args.no_matrix and not args.observability_only:
        progress("the template's rendering matrix (one run)")
        results.add(
            "Matrix: " + ", ".join(project.MATRIX_TESTS) + " (xdist)", "s", project.run_matrix()
        )

    report = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(database_version, service_python),
        "options": {key: str(value) for key, value in vars(args).items()},
        "measurements": results.as_json(),
        "details": results.details,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    progress(f"every measurement in {args.output}")
    print(results.table())
    return 0


def terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds like Ctrl-C: every `finally` stops its server and drops its database."""
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, terminate)
    try:
        sys.exit(main())
    except (CommandFailedError, RuntimeError) as exc:
        print(f"bench: failed: {exc}", file=sys.stderr)
        sys.exit(1)
