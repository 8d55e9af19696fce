"""Instructions per request, counted by valgrind's callgrind: a cost that does not drift.

Requests/s and CPU time move by a quarter within an hour on a shared VM
(bench/README.md): they compare only runs made side by side. Callgrind runs the
server on a synthetic CPU and counts the instructions it executes in user
space, so the same code and the same requests give the same count on a busy
machine or an idle one, today or next month. It sees neither the kernel (the
network, system calls) nor cache misses: a count is no time, but what the
service's own code and libraries cost per request, beside the reference app's
(bench/reference_app.py) counted the same way.

The server runs alone under callgrind, about fifty times slower, with 1 worker.
Requests go one after the other on one keep-alive connection, after a warm-up
that lets caches and Python's specializing interpreter settle; each window's
counters are zeroed before and dumped after with `callgrind_control`.
"""

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.load import Request
from bench.programs import program_path

WARM_UP_REQUESTS = 100
WINDOW_REQUESTS = 100
WINDOWS = 3
# Python starts and imports the app about fifty times slower under callgrind.
READY_TIMEOUT_SECONDS = 600
UNIT = "k instructions"
# A dump's header line with its part's count of instructions (callgrind's default event).
SUMMARY = re.compile(r"^summary: (\d+)$", re.MULTILINE)


def valgrind_path() -> str:
    return program_path(
        "valgrind",
        "the instruction counts",
        "Debian/Ubuntu: `apt-get install -y valgrind`; macOS has none: skip them with "
        "--no-instructions",
    )


def instructions_in(dump: str) -> int:
    """The instructions a callgrind dump counted since the counters were zeroed."""
    found = SUMMARY.search(dump)
    if found is None:
        raise RuntimeError("no 'summary:' line in the callgrind dump")
    return int(found[1])


def under_callgrind(dumps: Path) -> tuple[str, ...]:
    """The command prefix that runs a server under callgrind, its dumps in `dumps`."""
    return (
        valgrind_path(),
        "--tool=callgrind",
        f"--callgrind-out-file={dumps / 'callgrind.out'}",
    )


class Counter:
    """The counters of one server under callgrind, read per window of requests."""

    def __init__(self, pid: int, dumps: Path, client: httpx.Client) -> None:
        self.pid = pid
        self.dumps = dumps
        self.client = client

    def control(self, *args: str) -> None:
        subprocess.run(
            ["callgrind_control", *args, str(self.pid)],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def send(self, request: Request, authorization: str, count: int) -> None:
        headers = {"Authorization": authorization} if authorization else {}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        for _ in range(count):
            response = self.client.request(
                request.method, request.path, content=request.body, headers=headers
            )
            response.raise_for_status()

    def per_request(
        self, request: Request, authorization: str, windows: int = WINDOWS
    ) -> list[float]:
        """Thousands of instructions per request, for each window after the warm-up."""
        self.send(request, authorization, WARM_UP_REQUESTS)
        counts = []
        for _ in range(windows):
            for dump in self.dumps.glob("callgrind.out*"):
                dump.unlink()
            self.control("--zero")
            self.send(request, authorization, WINDOW_REQUESTS)
            self.control("--dump")
            [dump] = self.dumps.glob("callgrind.out*")
            counts.append(instructions_in(dump.read_text()) / WINDOW_REQUESTS / 1000)
        return counts


@contextmanager
def counting(pid: int, base_url: str, dumps: Path) -> Iterator[Counter]:
    with httpx.Client(base_url=base_url, timeout=120) as client:
        yield Counter(pid, dumps, client)
