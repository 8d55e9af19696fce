"""Rendering the template and running a rendered project's own commands, timed."""

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.databases import Databases
from tests.support.project import ROOT, project_env, render

PROJECT_NAME = "Bench"
# pytest's closing line, e.g. "== 120 passed, 1 warning in 12.06s ==".
PYTEST_SUMMARY = re.compile(r"(\d+) passed.* in ([\d.]+)s")


class CommandFailedError(Exception):
    pass


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run `command`; its wall time and output. Raises with the output when it fails."""
    started = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env or project_env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    elapsed = time.perf_counter() - started
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise CommandFailedError(f"`{' '.join(command)}` failed in {cwd}:\n{tail}")
    return elapsed, output


def render_cli(template: Path, destination: Path) -> float:
    """`copier copy` as a user runs it, with default answers: its wall time."""
    copier = Path(sys.executable).with_name("copier")
    command = [str(copier), "copy", "--defaults", "--quiet", "--vcs-ref", "HEAD"]
    elapsed, _ = run(
        [*command, "--data", f"project_name={PROJECT_NAME}", str(template), str(destination)],
        cwd=ROOT,
    )
    return elapsed


def render_in_process(template: Path, destination: Path) -> float:
    """Copier's `run_copy`, as the template's tests render: no interpreter start-up."""
    started = time.perf_counter()
    render(template, destination, {"project_name": PROJECT_NAME})
    return time.perf_counter() - started


def database_env(databases: Databases) -> dict[str, str]:
    return project_env(DATABASE_URL=databases.url, TEST_DATABASE_URL=databases.test_url)


def sync(project: Path) -> float:
    return run(["uv", "sync", "--locked"], cwd=project)[0]


def python_version(project: Path) -> str:
    """The Python the project runs on: the one its .python-version pins, as uv found it."""
    code = "import platform; print(platform.python_version())"
    return run(["uv", "run", "--locked", "python", "-c", code], cwd=project)[1].strip()


def migrate(project: Path, databases: Databases) -> float:
    command = ["uv", "run", "--locked", "alembic", "upgrade", "head"]
    return run(command, cwd=project, env=database_env(databases))[0]


@dataclass(frozen=True)
class SuiteRun:
    wall_seconds: float
    tests: int
    pytest_seconds: float

    @property
    def ms_per_test(self) -> float:
        return self.pytest_seconds / self.tests * 1000


def run_suite(project: Path, databases: Databases) -> SuiteRun:
    command = ["uv", "run", "--locked", "pytest", "-q", "-p", "no:cacheprovider"]
    wall, output = run(command, cwd=project, env=database_env(databases))
    summaries = PYTEST_SUMMARY.findall(output)
    if not summaries:
        raise CommandFailedError(
            f"no pytest summary in the output of the rendered suite:\n{output}"
        )
    passed, seconds = summaries[-1]
    return SuiteRun(wall_seconds=wall, tests=int(passed), pytest_seconds=float(seconds))


# The template's own tests that render every answer set of tests/support/matrix.py and
# run its gates: what CI spends most of its time on.
MATRIX_TESTS = ("tests/matrix/test_gates.py", "tests/rendering/test_render.py")


def run_matrix() -> float:
    """Wall time of the template's rendering matrix, run as CI runs it (xdist, every core)."""
    return run(["uv", "run", "--locked", "pytest", "-q", *MATRIX_TESTS], cwd=ROOT)[0]
