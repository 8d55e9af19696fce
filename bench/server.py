"""The rendered app under uvicorn, in its own process group, always stopped.

Every server started is recorded: `stop_all` (run at exit, and on SIGTERM via
the SystemExit that `__main__` raises) ends the groups still running, so no
server outlives the benchmark even when it fails half way.
"""

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from tests.support.ports import free_port
from tests.support.project import project_env

READY_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 15

_running: set[subprocess.Popen[bytes]] = set()


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group (uvicorn and its workers), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
            break
        except subprocess.TimeoutExpired:
            continue
    # Workers of a killed supervisor may remain in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    _running.discard(process)


@atexit.register
def stop_all() -> None:
    for process in list(_running):
        _stop(process)


class PeakMemory:
    """Samples the resident memory of a process and its children (the workers)."""

    INTERVAL_SECONDS = 0.1

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak_bytes = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def tree(self) -> list[psutil.Process]:
        return [self.process, *self.process.children(recursive=True)]

    def _sample(self) -> None:
        while not self._stopped.wait(self.INTERVAL_SECONDS):
            total = 0
            for process in self.tree():
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak_bytes = max(self.peak_bytes, total)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its workers."""
        total = 0.0
        for process in self.tree():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


@contextmanager
def serve(
    project: Path,
    workers: int,
    env: dict[str, str],
    log: Path,
    *,
    app: tuple[str, ...] = ("app.main:app",),
    ready_path: str = "/api/health",
    wrapper: tuple[str, ...] = (),
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> Iterator[tuple[str, PeakMemory]]:
    """uvicorn with the Dockerfile's flags and WEB_CONCURRENCY workers; its URL and monitor.

    `app` is uvicorn's application argument, with any options that find it;
    `wrapper` runs uvicorn (valgrind, for instance).
    """
    port = free_port()
    uvicorn = project / ".venv" / "bin" / "uvicorn"
    command = [*wrapper, str(uvicorn), *app, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("ab") as output:
        process = subprocess.Popen(
            [*command, "--proxy-headers"],
            cwd=project,
            env=project_env(WEB_CONCURRENCY=str(workers), **env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _running.add(process)
    monitor = PeakMemory(process.pid)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(f"{base_url}{ready_path}", process, log, ready_timeout)
        yield base_url, monitor
    finally:
        monitor.stop()
        _stop(process)


def log_tail(log: Path, lines: int = 30) -> str:
    """The end of the server's log, for error messages: the log's folder is temporary."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_until_ready(
    ready_url: str, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(ready_url, timeout=2).status_code == httpx.codes.OK:
                return
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {ready_url} within {timeout:g} s")
