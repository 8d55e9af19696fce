"""Every answer set of the matrix renders a project whose own gates pass.

In the rendered project: the locked install, lint, format and strict typing;
then, on the PostgreSQL server under test, the migrations up, checked against
the models, down and up again, and the project's own test suite.
"""

from urllib.parse import urlsplit

import pytest

from tests.conftest import Databases, Renders
from tests.matrix import COMBINATIONS

MIGRATION_ROUND_TRIP = (("upgrade", "head"), ("check",), ("downgrade", "base"), ("upgrade", "head"))


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_rendered_project_passes_its_static_gates(combination: str, rendered: Renders) -> None:
    project = rendered[combination]

    project.run("uv", "sync", "--locked")
    project.run("uv", "run", "--locked", "ruff", "check", ".")
    project.run("uv", "run", "--locked", "ruff", "format", "--check", ".")
    project.run("uv", "run", "--locked", "mypy", "--strict", "app")
    project.run("uv", "run", "--locked", "mypy")


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_rendered_project_passes_its_database_gates(
    combination: str, rendered: Renders, databases: Databases
) -> None:
    project = rendered[combination]
    database = {"DATABASE_URL": databases.url, "TEST_DATABASE_URL": databases.test_url}

    project.run("uv", "sync", "--locked")
    for step in MIGRATION_ROUND_TRIP:
        project.run("uv", "run", "--locked", "alembic", *step, env=database)
    output = project.run("uv", "run", "--locked", "pytest", env=database)
    [header] = [line for line in output.splitlines() if line.startswith("database: ")]
    assert header.startswith("database: TEST_DATABASE_URL, postgresql+asyncpg://")
    assert urlsplit(databases.test_url).path in header
    assert " passed" in output
    assert " failed" not in output
