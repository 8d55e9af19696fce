"""Load generation with wrk, a C load generator that takes little CPU.

The request comes from `report.lua` via environment variables; its `done()`
prints wrk's own counts and latency percentiles as JSON. wrk's CPU use is read
from its resource usage when it exits, to show it is not the bottleneck.
"""

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.programs import program_path

SCRIPT = Path(__file__).with_name("report.lua")
MARKER = "BENCH_JSON "


def wrk_path() -> str:
    return program_path(
        "wrk",
        "the serving measurements",
        "Debian/Ubuntu: `apt-get install -y wrk`; macOS: `brew install wrk`",
    )


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: str = ""
    content_type: str = ""


@dataclass(frozen=True)
class Load:
    """One wrk run's shape: threads, connections and duration."""

    threads: int
    connections: int
    seconds: float
    authorization: str = ""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int
    wrk_cpu_share: float
    raw: dict[str, object]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


class Wrk:
    """A running wrk process; `result()` waits for it."""

    def __init__(self, base_url: str, request: Request, load: Load) -> None:
        env = {
            **os.environ,
            "BENCH_METHOD": request.method,
            "BENCH_BODY": request.body,
            "BENCH_CONTENT_TYPE": request.content_type,
            "BENCH_AUTHORIZATION": load.authorization,
        }
        command = [
            wrk_path(),
            f"-t{load.threads}",
            f"-c{load.connections}",
            f"-d{load.seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(SCRIPT),
            base_url + request.path,
        ]
        # Output to a file: waiting with wait4 (for the resource usage) must not
        # leave wrk blocked on a full pipe.
        self.output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by result or stop)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command, stdout=self.output, stderr=subprocess.STDOUT, env=env
        )

    def result(self) -> LoadResult:
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - self.started
        self.output.seek(0)
        text = self.output.read()
        self.output.close()
        lines = [line for line in text.splitlines() if line.startswith(MARKER)]
        if self.process.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed (exit {self.process.returncode}):\n{text}")
        raw = json.loads(lines[-1].removeprefix(MARKER))
        errors = raw["errors"]
        return LoadResult(
            requests=raw["requests"],
            seconds=raw["duration_us"] / 1e6,
            p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            failed=sum(errors.values()),
            wrk_cpu_share=(usage.ru_utime + usage.ru_stime) / wall,
            raw=raw,
        )

    def stop(self) -> None:
        """End wrk early (an interrupted benchmark)."""
        if self.process.returncode is None:
            self.process.kill()
            self.process.wait()
        if not self.output.closed:
            self.output.close()


def measure(base_url: str, request: Request, load: Load) -> LoadResult:
    wrk = Wrk(base_url, request, load)
    try:
        return wrk.result()
    finally:
        wrk.stop()
