"""A render's suite is green the ways its README says to run it, not only the matrix's way.

The matrix (test_gates.py) exports TEST_DATABASE_URL, as CI does. A newcomer
runs `uv run pytest` with nothing exported: the suite then uses the project's
own PostgreSQL (`.data/postgres`), or the TEST_DATABASE_URL they wrote into
`.env`. Each way runs the defaults' whole suite in a copy of the render, with
DATABASE_URL and TEST_DATABASE_URL removed from the environment.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import Databases
from tests.support.project import Project, Renders

UNSET = ("DATABASE_URL", "TEST_DATABASE_URL")


@pytest.fixture
def newcomers_copy(rendered: Renders, scratch: Path) -> Iterator[Project]:
    """The defaults' render as a newcomer has it: its own .env, its own environment."""
    render = rendered["defaults"]
    project = Project(scratch / "project", render.answers)
    ignored = shutil.ignore_patterns(".venv", ".data", ".mypy_cache", ".ruff_cache", "__pycache__")
    shutil.copytree(render.path, project.path, ignore=ignored)
    project.run("uv", "sync", "--locked", unset=UNSET)
    yield project
    # Left running by the suite, as ./start.sh leaves it; stopped with the copy.
    project.run("uv", "run", "--locked", "python", "-m", "commands.local_postgres", "stop")


def assert_green(output: str, database: str) -> None:
    [header] = [line for line in output.splitlines() if line.startswith("database: ")]
    assert header.startswith(f"database: {database}"), header
    assert " passed" in output
    assert " failed" not in output
    assert " error" not in output


def test_the_suite_passes_on_the_projects_own_postgresql(newcomers_copy: Project) -> None:
    output = newcomers_copy.run("uv", "run", "--locked", "pytest", unset=UNSET)

    assert_green(output, "the project's PostgreSQL")
    assert str(newcomers_copy.path / ".data" / "postgres") in output


def test_the_suite_passes_with_test_database_url_only_in_dotenv(
    newcomers_copy: Project, databases: Databases
) -> None:
    dotenv = newcomers_copy.path / ".env"
    dotenv.write_text(f"{dotenv.read_text()}TEST_DATABASE_URL={databases.test_url}\n")

    output = newcomers_copy.run("uv", "run", "--locked", "pytest", unset=UNSET)

    assert_green(output, "TEST_DATABASE_URL, postgresql+asyncpg://")
