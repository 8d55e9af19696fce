"""Fixtures of the template's tests: render the working tree, run rendered projects' commands.

Renders are cached per answer set for the whole session (per xdist worker), so
that the static checks and the gates of one answer set share one render.

Rendered projects test against the PostgreSQL server of TEST_DATABASE_URL (any
database on it: each render gets fresh ones), as they do themselves; without
it, against a throwaway embedded PostgreSQL that the session starts.

Only pytest's hooks and fixtures live here; what they and the tests use is in
`tests/support/`.
"""

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from tests.support.databases import (
    Databases,
    admin_conninfo,
    fresh_databases,
    start_embedded_postgres,
)
from tests.support.project import Project, Renders, outside_pytest_tmp, snapshot_template

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use the server under test: `-m database` runs just those."""
    for item in items:
        if "databases" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """Like `tmp_path`, for projects whose suites start embedded PostgreSQL servers."""
    with outside_pytest_tmp("template-test-") as folder:
        yield folder


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="session")
def rendered(template: Path) -> Iterator[Renders]:
    with outside_pytest_tmp("template-renders-") as folder:
        yield Renders(template, folder)


@pytest.fixture(scope="session")
def project(rendered: Renders) -> Project:
    """The defaults' render with its locked environment installed: what serving tests serve.

    Modules that test another render define a `project` of their own.
    """
    project = rendered["defaults"]
    project.run("uv", "sync", "--locked")
    return project


@pytest.fixture
def databases() -> Iterator[Databases]:
    with fresh_databases() as created:
        yield created
