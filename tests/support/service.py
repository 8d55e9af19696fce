"""Serve a rendered project with a real uvicorn on a free loopback port, and always stop it.

For tests about serving: the project's own virtualenv (`uv sync --locked` first),
its own settings from the environment given, real HTTP. The server runs in a
process group of its own, so that nothing it starts outlives the test.
"""

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.databases import Databases, fresh_databases
from tests.support.ports import free_port
from tests.support.project import Project, project_env

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Service:
    """A running service: where it answers and where its output goes."""

    process: "subprocess.Popen[bytes]"
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def assert_no_unhandled_errors(service: Service) -> None:
    """uvicorn logs every exception that escaped the app (a 500) under this line."""
    assert "Exception in ASGI application" not in service.output()


def new_secret_keys() -> dict[str, str]:
    """The three secret keys production refuses to start without, made up afresh."""
    return {
        f"{name}_SECRET_KEY": secrets.token_urlsafe(32)
        for name in ("ACCESS", "RESET_PASSWORD", "VERIFICATION")
    }


@contextlib.contextmanager
def serve(
    project: Project,
    env: Mapping[str, str],
    log: Path,
    args: Sequence[str] = (),
    port: int | None = None,
    production: bool = False,
) -> Iterator[Service]:
    """uvicorn serving `app.main:app` of `project`, answering /api/health/live.

    `args` go to uvicorn after the address (`--workers 2`, say). With
    `production`, the way the image serves instead: `python -m commands.serve`,
    which reads HOST, PORT and WEB_CONCURRENCY from `env`, and `args` are ignored.
    On `port` (an instance restarted where it was), or on a free one.

    Stopped on the way out like a deployment stops it (SIGTERM, which lets the
    app close its connections), then killed with its whole group if it lingers.
    """
    port = port or free_port()
    python = str(project.path / ".venv" / "bin" / "python")
    address = ["--host", "127.0.0.1", "--port", str(port)]
    command = (
        [python, "-m", "commands.serve"]
        if production
        else [python, "-m", "uvicorn", "app.main:app", *address, "--no-access-log", *args]
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=project.path,
            # No load balancer polls these: out of rotation at once on SIGTERM, unless a
            # test sets its own delay.
            env=project_env(
                **{"SHUTDOWN_DELAY_SECONDS": "0", "HOST": "127.0.0.1", "PORT": str(port), **env}
            ),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_live(service)
        yield service
    finally:
        stop_process_group(process)


@contextlib.contextmanager
def in_process_group(
    command: Sequence[str], cwd: Path, env: Mapping[str, str], log: Path
) -> Iterator["subprocess.Popen[bytes]"]:
    """`command` in a process group of its own, its output in `log`; the whole group
    killed on the way out, so that nothing it started outlives the test."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def stop_process_group(process: "subprocess.Popen[bytes]") -> None:
    """SIGTERM, as a deployment stops a server; its whole group killed if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def migrated_database(project: Project, env: Mapping[str, str]) -> Iterator[Databases]:
    """A fresh database at `project`'s migration head, with the settings `env` adds."""
    with fresh_databases() as created:
        settings = {**env, "DATABASE_URL": created.url}
        project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=settings)
        yield created


def wait_until_live(service: Service) -> None:
    """Until the process answers at all; whether it can serve is each test's question."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{service.output()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{service.base_url}/api/health/live", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    message = f"uvicorn did not answer in {START_TIMEOUT_SECONDS} s:\n{service.output()}"
    raise AssertionError(message)
