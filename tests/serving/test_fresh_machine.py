"""A rendered service on a machine with Python and uv, and no PostgreSQL server.

`./start.sh` without DATABASE_URL runs the project's own PostgreSQL (a real
uvicorn process, real HTTP); the data outlives the service and the database
server; the suite without TEST_DATABASE_URL runs in a database of its own there.
"""

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest

from tests.support.matrix import answers_for
from tests.support.ports import free_port
from tests.support.project import Project, outside_pytest_tmp, project_env, snapshot_template
from tests.support.readme import copy_and_start
from tests.support.service import in_process_group

# What a fresh machine does not have: the service and its suite find their own database.
DATABASE_SETTINGS = ("DATABASE_URL", "TEST_DATABASE_URL")
START_TIMEOUT_SECONDS = 600
EMAIL, PASSWORD = "first.user@example.com", "correct-Horse-battery-9"


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    """Rendered by README.md's first command, its local PostgreSQL stopped at the end.

    Word for word, run by bash in a checkout of the template, except that the
    locked copier stands in for `uvx copier` (the latest from PyPI).
    """
    copy, start = copy_and_start()
    copier = str(Path(sys.executable).parent / "copier")
    with outside_pytest_tmp("fresh-machine-") as folder:
        checkout = snapshot_template(folder / "checkout")
        command = shlex.join([copier, *copy[2:]]).replace("'$PWD'", '"$PWD"')
        subprocess.run(["bash", "-c", command], cwd=checkout, check=True, capture_output=True)
        path = (checkout / copy[-1]).resolve()
        assert (checkout / start).resolve() == path / "start.sh"
        project = Project(path, {**answers_for("defaults"), "project_name": "My Service"})
        try:
            yield project
        finally:
            stop_local_postgres(project)


def stop_local_postgres(project: Project) -> None:
    """Stop the project's server with its own command, or else by its PID."""
    command = ("uv", "run", "--locked", "python", "-m", "commands.local_postgres", "stop")
    with contextlib.suppress(AssertionError):
        project.run(*command, unset=DATABASE_SETTINGS)
    pid_file = project.path / ".data" / "postgres" / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)


@contextlib.contextmanager
def start_script(project: Project, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`./start.sh` in a process group of its own, killed with all of it on the way out."""
    env = project_env(unset=DATABASE_SETTINGS, HOST="127.0.0.1", PORT=str(port))
    with in_process_group(["./start.sh"], project.path, env, log) as process:
        yield process


def call(
    method: str,
    url: str,
    *,
    body: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    token: str | None = None,
) -> tuple[int, Any]:
    """One HTTP request to the service; the status and the decoded JSON body."""
    headers, data = {}, None
    if body is not None:
        headers["Content-Type"], data = "application/json", json.dumps(body).encode()
    if form is not None:
        headers["Content-Type"], data = (
            "application/x-www-form-urlencoded",
            urlencode(form).encode(),
        )
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = Request(url, data=data, headers=headers, method=method)  # noqa: S310 (our own http URL)
    try:
        with urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_until_healthy(process: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"./start.sh exited:\n{log.read_text()}"
        with contextlib.suppress(URLError, ConnectionError, TimeoutError):
            if call("GET", f"{base}/api/health")[0] == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"/api/health did not answer 200 in {START_TIMEOUT_SECONDS} s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as in a terminal: the service shuts down."""
    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)


def log_in(base: str) -> str:
    status, body = call(
        "POST", f"{base}/api/auth/login", form={"username": EMAIL, "password": PASSWORD}
    )
    assert status == 200, body
    return str(body["access_token"])


def test_start_script_serves_on_its_own_postgresql_and_keeps_the_data(
    project: Project, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    first_log = tmp_path / "first.log"
    with start_script(project, port, first_log) as service:
        wait_until_healthy(service, base, first_log)
        status, user = call(
            "POST", f"{base}/api/auth/register", body={"email": EMAIL, "password": PASSWORD}
        )
        assert status == 201, user
        assert call("GET", f"{base}/api/users/me", token=log_in(base)) == (200, user)

        # A second start on the same port: a clear error, the database left alone.
        second = subprocess.run(
            ["./start.sh"],
            cwd=project.path,
            env=project_env(unset=DATABASE_SETTINGS, HOST="127.0.0.1", PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
            check=False,
        )
        assert second.returncode != 0
        assert "address already in use" in second.stdout + second.stderr
        assert "already running" in second.stdout
        assert "Traceback" not in second.stdout + second.stderr
        stop(service)
    assert re.search(r"Database: the local PostgreSQL \d+ in .*, started", first_log.read_text())

    # The database server stops too: everything starts again from the files.
    stop_local_postgres(project)
    assert not (project.path / ".data" / "postgres" / "postmaster.pid").exists()

    second_log = tmp_path / "second.log"
    with start_script(project, port, second_log) as service:
        wait_until_healthy(service, base, second_log)
        assert call("GET", f"{base}/api/users/me", token=log_in(base)) == (200, user)
        stop(service)
    assert ".data/" in (project.path / ".gitignore").read_text().splitlines()


def test_the_suite_runs_on_the_projects_own_postgresql_and_leaves_it_running(
    project: Project,
) -> None:
    project.run("uv", "sync", "--locked")
    suite = ("uv", "run", "--locked", "pytest", "tests/test_health.py")
    data = project.path / ".data" / "postgres"

    runs = [project.run(*suite, unset=DATABASE_SETTINGS) for _ in range(2)]

    for output in runs:
        assert re.search(
            rf"database: the project's PostgreSQL \d+ in {re.escape(str(data))}, database test \(",
            output,
        )
        assert " passed" in output
        assert " failed" not in output
    # Left running for the next run, like ./start.sh leaves it.
    assert (data / "postmaster.pid").exists()
