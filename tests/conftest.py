"""Fixtures of the template's tests: render the working tree, run rendered projects' commands.

Renders are cached per answer set for the whole session (per xdist worker), so
that the static checks and the gates of one answer set share one render.
"""

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from copier import run_copy
from psycopg import sql

from tests.matrix import Answers, answers_for

ROOT = Path(__file__).resolve().parents[1]
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}
# The server the rendered projects test against (any database on it: each
# render gets fresh ones). TEST_DATABASE_URL wins, as in the rendered projects.
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a rendered project's commands: its own venv, bytecode cached."""
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    # Some machines disable .pyc files globally; every `uv run` would then pay
    # for compiling its imports again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return {**env, **extra}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_IDENTITY},
    )
    return result.stdout


def working_tree_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what the next commit would hold."""
    listing = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    return [name for name in listing.split("\0") if name and (ROOT / name).exists()]


def snapshot_template(destination: Path) -> Path:
    """Copy the working tree into a one-commit git repository.

    Copier renders git templates from a commit: this one holds exactly the
    working tree, uncommitted edits included, so tests test what is on disk.
    """
    for name in working_tree_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    git(destination, "init", "-q", "-b", "main")
    git(destination, "add", "-A")
    git(destination, "commit", "-q", "-m", "snapshot of the working tree")
    return destination


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_template(tmp_path_factory.mktemp("template"))


def render(template: Path, destination: Path, answers: Answers) -> Path:
    run_copy(
        str(template),
        destination,
        data=answers,
        defaults=True,
        vcs_ref="HEAD",
        quiet=True,
    )
    return destination


@dataclass
class Project:
    """A rendered project and the commands its README promises."""

    path: Path
    answers: Answers

    def run(self, *command: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
        """Run `command` in the project; fail the test with its output if it fails."""
        result = subprocess.run(
            command,
            cwd=self.path,
            env=project_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"`{' '.join(command)}` failed:\n{output}"
        return output

    def files(self) -> list[Path]:
        ignored = {".venv", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache", "__pycache__"}
        return sorted(
            path
            for path in self.path.rglob("*")
            if path.is_file() and not ignored.intersection(path.relative_to(self.path).parts)
        )


class Renders(dict[str, Project]):
    """Rendered projects by combination name, each rendered on first use."""

    def __init__(self, template: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
        super().__init__()
        self.template = template
        self.tmp_path_factory = tmp_path_factory

    def __missing__(self, combination: str) -> Project:
        answers = answers_for(combination)
        path = self.tmp_path_factory.mktemp(combination) / "project"
        self[combination] = Project(render(self.template, path, answers), answers)
        return self[combination]


@pytest.fixture(scope="session")
def rendered(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Renders:
    return Renders(template, tmp_path_factory)


@dataclass(frozen=True)
class Databases:
    """URLs of a fresh pair of databases for one rendered project."""

    url: str
    test_url: str


@contextmanager
def fresh_databases() -> Iterator[Databases]:
    """A fresh database (and the name of its test twin) on the PostgreSQL server under test."""
    name = f"tpl_{secrets.token_hex(4)}"
    admin = psycopg.conninfo.conninfo_to_dict(POSTGRES_URL.replace("+asyncpg", ""))
    base = POSTGRES_URL.rsplit("/", 1)[0]
    with psycopg.connect(**admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield Databases(url=f"{base}/{name}", test_url=f"{base}/{name}_test")
    finally:
        with psycopg.connect(**admin, autocommit=True) as connection:
            for database in (name, f"{name}_test"):
                connection.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(database)
                    )
                )


@pytest.fixture
def databases() -> Iterator[Databases]:
    with fresh_databases() as created:
        yield created
