"""Every answer set of the matrix renders a project whose own gates pass.

In the rendered project: the locked install, lint, format and strict typing;
then, on the PostgreSQL server under test, the migrations up, checked against
the models, down and up again, and the project's own test suite.
"""

import re
import shutil
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.databases import Databases
from tests.support.matrix import COMBINATIONS
from tests.support.project import Project, Renders, git

# pre-commit's report: `name.....Passed`, one line per hook.
HOOK_RESULT = re.compile(r"^(.+?)\.{2,}(Passed|Failed|\(no files to check\)Skipped)$", re.MULTILINE)
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
    # In a random order (modules, and tests within each): a test that needs another
    # to run first fails here the day it is written, with the seed to replay it.
    output = project.run("uv", "run", "--locked", "pytest", "--random-order", env=database)
    assert re.search(r"^Using --random-order-seed=\d+$", output, re.MULTILINE)
    [header] = [line for line in output.splitlines() if line.startswith("database: ")]
    assert header.startswith("database: TEST_DATABASE_URL, postgresql+asyncpg://")
    assert urlsplit(databases.test_url).path in header
    assert " passed" in output
    assert " failed" not in output


def test_pre_commit_hooks_pass_on_a_fresh_defaults_project(
    rendered: Renders, tmp_path: Path
) -> None:
    """`pre-commit run --all-files` in a new git repository of the defaults' render, offline."""
    render = rendered["defaults"]
    project = Project(tmp_path / "project", render.answers)
    caches = shutil.ignore_patterns(".venv", ".git", ".mypy_cache", ".ruff_cache", "__pycache__")
    shutil.copytree(render.path, project.path, ignore=caches)
    git(project.path, "init", "-q")
    git(project.path, "add", "--all")
    pre_commit = str(Path(sys.executable).parent / "pre-commit")

    output = project.run(
        pre_commit, "run", "--all-files", env={"PRE_COMMIT_HOME": str(tmp_path / "pre-commit")}
    )

    hooks = dict(HOOK_RESULT.findall(output))
    assert hooks == {
        "ruff check": "Passed",
        "ruff format": "Passed",
        "mypy": "Passed",
        "no conflict markers (git merge, copier update)": "Passed",
        "no leftover .rej files from copier update": "(no files to check)Skipped",
        "no files over 500 KB (uv.lock aside)": "Passed",
    }
    assert git(project.path, "diff") == ""  # nothing to fix or reformat
