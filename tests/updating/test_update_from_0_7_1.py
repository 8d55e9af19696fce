"""`copier update` from 0.7.1, as released, to this tree: a deployed project keeps its
data, its users stay logged in, and it conflicts only where CHANGELOG says it will.

The project was extended the way 0.7.1's AGENTS.md said (tests/support/update_scenario.py),
served, and logged in to; then it takes the update, settles the conflicts as the
changelog's "Updating" says, and passes its gates on the database it had.
"""

import json
import re
import tomllib
from pathlib import Path

import httpx
import psycopg
import pytest
from copier import run_copy

from hooks.linear_migrations import VERSIONS, parse_revision
from tests.support.databases import Databases
from tests.support.project import ROOT, Project, git
from tests.support.service import new_secret_keys, serve
from tests.support.update_scenario import (
    INVOICES_ROUTER,
    INVOICES_ROUTER_NAME,
    LEDGER_REVISION,
    LOGIN_HOOK,
    PREVIOUS_ANSWERS,
    PREVIOUS_RELEASE,
    PREVIOUS_VERSION,
    extend_as_agents_md_said_at_0_7_1,
    move_the_login_hook_to_the_user_manager,
)
from tests.support.updates import (
    copier,
    files_with_markers,
    past_release_then_working_tree,
    status,
)

NEXT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# Where a project that followed 0.7.1's AGENTS.md conflicts, and how CHANGELOG says to
# settle each: the two registries take the template's side (it finds models and routers
# by itself now); users.py takes the template's side, the team's hook moving to
# app/core/user_manager.py.
CONFLICTED = ["app/api/routes/__init__.py", "app/core/users.py", "app/db/base.py"]
PASSWORD = "a passphrase from before the update"  # noqa: S105 (a made-up account's)


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return past_release_then_working_tree(
        tmp_path_factory.mktemp("since-0.7.1"), PREVIOUS_RELEASE, PREVIOUS_VERSION, NEXT_VERSION
    )


def production(database: Databases, secrets: dict[str, str]) -> dict[str, str]:
    """Production's settings; the mail server is a closed port (the mails fail, logged)."""
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database.url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "9",
        **secrets,
    }


def test_a_0_7_1_project_takes_the_update_keeps_its_data_and_its_users_logged_in(
    releases: Path, scratch: Path, databases: Databases
) -> None:
    path = scratch / "project"
    run_copy(str(releases), path, data=PREVIOUS_ANSWERS, defaults=True, vcs_ref=PREVIOUS_VERSION)
    project = Project(path, PREVIOUS_ANSWERS)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Generated from the template")
    extend_as_agents_md_said_at_0_7_1(path)
    project.run("uv", "sync", "--locked")
    project.run("uv", "run", "--locked", "python", "-m", "commands.openapi")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Our invoices")

    # Deployed at 0.7.1: migrated to the team's own head, a user logged in, an invoice.
    secrets = new_secret_keys()
    settings = production(databases, secrets)
    project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=settings)
    with serve(project, settings, scratch / "before.log") as service:
        body = {"email": "ada@example.com", "password": PASSWORD}
        assert httpx.post(f"{service.base_url}/api/auth/register", json=body).status_code == 201
        login = httpx.post(
            f"{service.base_url}/api/auth/login",
            data={"username": body["email"], "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
    tokens = login.json()
    rows = {
        "users": "SELECT id, email, hashed_password FROM users",
        "refresh_tokens": "SELECT token_hash, family_id, used_at, revoked_at FROM refresh_tokens",
        "invoices": "SELECT id, number FROM invoices",
    }
    url = databases.url.replace("+asyncpg", "")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("INSERT INTO invoices (number) VALUES ('2026-0001')")
        before = {table: connection.execute(query).fetchall() for table, query in rows.items()}

    result = copier(project, "update", "--trust", "--defaults")

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"_commit: {NEXT_VERSION}\n" in (path / ".copier-answers.yml").read_text()
    # Conflicts only where CHANGELOG's "Updating" says, each reported.
    assert sorted(files_with_markers(project)) == CONFLICTED
    for name in CONFLICTED:
        assert f"UU {name}" in status(project)
        assert f"  {name}  (conflict markers inline)" in output
        assert f"`{name}`" in unreleased_changes()
    # The contract waits for the project to run again, and says so.
    assert "openapi.json: not written again" in output
    # The team's own files are untouched.
    assert (path / INVOICES_ROUTER_NAME).read_text() == INVOICES_ROUTER
    # The template's new migrations, if any, follow the team's own: the job queue's (0003)
    # revises the team's head, the ledger, instead of the template's 0002.
    revises: dict[str, tuple[str, ...]] = {}
    for migration in sorted((path / VERSIONS).glob("*.py")):
        parsed = parse_revision(migration.read_text())
        assert parsed is not None
        assert parsed[1] != ("0002",) or parsed[0] == LEDGER_REVISION, migration.name
        revises[parsed[0]] = parsed[1]
    assert revises["0003"] == (LEDGER_REVISION,)

    # Settled as CHANGELOG says.
    for name in CONFLICTED:
        git(path, "checkout", "--theirs", "--", name)
    move_the_login_hook_to_the_user_manager(path)
    git(path, "add", *CONFLICTED)
    project.run("uv", "sync", "--locked")
    project.run("uv", "run", "--locked", "python", "-m", "commands.openapi")
    assert "/api/invoices/" in json.loads((path / "openapi.json").read_text())["paths"]
    assert LOGIN_HOOK.strip() in (path / "app/core/user_manager.py").read_text()

    # The gates, on the database that was deployed.
    project.run("uv", "run", "--locked", "ruff", "check", ".")
    project.run("uv", "run", "--locked", "ruff", "format", "--check", ".")
    project.run("uv", "run", "--locked", "mypy")
    project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=settings)
    project.run("uv", "run", "--locked", "alembic", "check", env=settings)
    suite = project.run(
        "uv", "run", "--locked", "pytest", env={"TEST_DATABASE_URL": databases.test_url}
    )
    assert " passed" in suite
    assert " failed" not in suite
    with psycopg.connect(url, autocommit=True) as connection:
        after = {table: connection.execute(query).fetchall() for table, query in rows.items()}
    assert after == before
    with psycopg.connect(url, autocommit=True) as connection:
        queue = connection.execute("SELECT to_regclass('pgqueuer')::text").fetchone()
    assert queue == ("pgqueuer",)

    # Still logged in: the access token and the refresh token of 0.7.1 work.
    with serve(project, settings, scratch / "after.log") as service:
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        me = httpx.get(f"{service.base_url}/api/users/me", headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["email"] == "ada@example.com"
        invoices = httpx.get(f"{service.base_url}/api/invoices/", headers=headers)
        assert invoices.json() == ["2026-0001"]
        refreshed = httpx.post(
            f"{service.base_url}/api/auth/refresh",
            json={"refresh_token": tokens["refresh_token"]},
        )
        assert refreshed.status_code == 200, refreshed.text


def unreleased_changes() -> str:
    """The changelog's section of what this tree changes, its Updating steps included."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    sections = re.findall(r"^## [^\n]*\n(.*?)(?=^## )", changelog, re.MULTILINE | re.DOTALL)
    return str(sections[0])
