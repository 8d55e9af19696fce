"""`copier update` brings a release into a project without losing any change of its own.

A git repository of the template holds the releases: 0.1.0 is the working
tree, 0.2.0 the working tree plus the next release of
`tests/support/update_scenario.py` (and, for the test about dependencies only,
0.1.1: 0.1.0 plus a dependency).
A project rendered from 0.1.0, committed, and changed the way teams change
their services (with a database migrated to its own head) is updated with the
`copier` commands the README gives, then checked file by file and by its gates.
"""

import json
import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from copier import run_copy

from hooks.linear_migrations import VERSIONS, parse_revision
from locks.relock import relock
from tests.support.databases import Databases, fresh_databases
from tests.support.project import (
    Project,
    git,
    project_env,
    snapshot_template,
)
from tests.support.update_scenario import (
    ANSWERS,
    AUDIT_MIGRATION_NAME,
    AUDIT_PATH,
    AUDIT_REVISION,
    AUDIT_ROUTER,
    AUDIT_ROUTER_NAME,
    DEPENDENCY_VERSION,
    INVOICE_REVISION,
    LOCK_VARIANT,
    NEW_VERSION,
    OLD_VERSION,
    RETENTION_SETTING,
    SESSIONLESS_RELEASE,
    SESSIONLESS_VERSION,
    SESSIONS_ANSWERS,
    SESSIONS_VERSION,
    TEMPLATE_DEPENDENCY,
    TEMPLATE_HEALTH_TAGS,
    USER_DEPENDENCY,
    USER_HEALTH_TAGS,
    USER_LOGIN_LIFETIME,
    USER_MODEL,
    USER_PAGE_SIZE,
    USER_PATH,
    USER_ROUTER,
    USER_ROUTER_NAME,
    add_dependency,
    add_invoices,
    change_project,
    next_release,
    remove_deploy_question,
    tag,
)
from tests.support.updates import (
    COPIER,
    MARKER,
    copier,
    files_with_markers,
    past_release_then_working_tree,
    status,
)

UPDATE_WORKFLOW = ".github/workflows/template-update.yml"
HEALTH = "app/api/routes/health.py"
BASE = "app/db/base.py"
# What the update to the next release changes in the changed project, and
# nothing else: `git status --porcelain` lines.
RELEASE_CHANGES = {
    " M .copier-answers.yml",
    " M .env.example",
    " M app/core/config.py",
    f"?? {AUDIT_ROUTER_NAME}",
    f"?? {VERSIONS}/{AUDIT_MIGRATION_NAME}",
    "?? app/db/models/audit_event.py",
}


@dataclass(frozen=True)
class ChangedProject:
    """A committed project with its own changes, and the revision of its own migration."""

    path: Path
    revision: str


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repository = snapshot_template(tmp_path_factory.mktemp("releases"))
    git(repository, "tag", OLD_VERSION)
    next_release(repository)
    tag(repository, NEW_VERSION)
    return repository


@pytest.fixture(scope="module")
def dependency_release(releases: Path) -> str:
    """0.1.1, branched from 0.1.0: one more dependency, and the lock resolved again."""
    git(releases, "checkout", "-q", "-b", "dependencies", OLD_VERSION)
    add_dependency(releases)
    git(releases, "commit", "-q", "-am", "Add a dependency")
    relock(LOCK_VARIANT, upgrade=False, root=releases)
    tag(releases, DEPENDENCY_VERSION)
    git(releases, "checkout", "-q", "main")
    return DEPENDENCY_VERSION


@pytest.fixture(scope="module")
def changed_project(releases: Path, tmp_path_factory: pytest.TempPathFactory) -> ChangedProject:
    path = tmp_path_factory.mktemp("changed") / "project"
    run_copy(str(releases), path, data=ANSWERS, defaults=True, vcs_ref=OLD_VERSION, quiet=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Generated from the template")
    project = Project(path, ANSWERS)
    change_project(path)
    project.run("uv", "add", USER_DEPENDENCY)
    with fresh_databases() as database:
        env = {"DATABASE_URL": database.url}
        project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=env)
        project.run(
            "uv", "run", "--locked", "alembic", "revision", "--autogenerate", "-m", "tags", env=env
        )
    # The API changed (page size, health tags): its contract is written again, as the README says.
    project.run("uv", "run", "--locked", "python", "-m", "commands.openapi")
    (migration,) = (path / VERSIONS).glob("*_tags.py")
    parsed = parse_revision(migration.read_text())
    assert parsed is not None
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Our own changes")
    return ChangedProject(path, parsed[0])


def clone(changed: ChangedProject, destination: Path) -> Project:
    """A working copy of the changed project, with its (git-ignored) settings."""
    git(destination.parent, "clone", "-q", str(changed.path), destination.name)
    shutil.copy2(changed.path / ".env", destination / ".env")
    return Project(destination, ANSWERS)


def test_update_keeps_every_change_brings_the_release_and_passes_the_gates(
    changed_project: ChangedProject, scratch: Path, databases: Databases
) -> None:
    # Outside pytest's temporary root: the project's suite starts embedded servers.
    project = clone(changed_project, scratch / "project")
    database = {"DATABASE_URL": databases.url, "TEST_DATABASE_URL": databases.test_url}
    # The project's database, as deployed: at the project's own latest migration.
    project.run("uv", "sync", "--locked")
    project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=database)
    committed_lock = (project.path / "uv.lock").read_text()

    result = copier(project, "update", "--trust", "--defaults")

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    path = project.path
    # 1. Every change of the project's own is still there.
    assert USER_PAGE_SIZE in (path / "app/api/routes/posts.py").read_text()
    assert USER_LOGIN_LIFETIME in (path / "app/core/config.py").read_text()
    assert (path / "app/db/models/tag.py").read_text() == USER_MODEL
    assert (path / USER_ROUTER_NAME).read_text() == USER_ROUTER
    assert f'"{USER_DEPENDENCY}>=' in (path / "pyproject.toml").read_text()
    assert (path / "uv.lock").read_text() == committed_lock
    assert not (path / ".pre-commit-config.yaml").exists()
    # 2. The release arrived: its table, revised on the project's own migration, its router.
    assert (path / "app/db/models/audit_event.py").exists()
    assert (path / AUDIT_ROUTER_NAME).read_text() == AUDIT_ROUTER
    assert RETENTION_SETTING in (path / "app/core/config.py").read_text()
    migration = (path / VERSIONS / AUDIT_MIGRATION_NAME).read_text()
    assert parse_revision(migration) == (AUDIT_REVISION, (changed_project.revision,))
    assert f"now follows your migration {changed_project.revision}" in output
    answers = (path / ".copier-answers.yml").read_text()
    assert f"_commit: {NEW_VERSION}\n" in answers
    assert "mail_backend: console\n" in answers  # renamed, the old answer kept
    assert "email_backend" not in answers
    assert "pre_commit" not in answers  # removed
    # 3. Only the line both sides changed conflicts: marked inline, reported, nothing else touched.
    assert status(project) == RELEASE_CHANGES | {f"UU {HEALTH}"}
    assert files_with_markers(project) == [HEALTH]
    conflict = (path / HEALTH).read_text()
    assert (
        f'<<<<<<< before updating\nrouter = APIRouter(prefix="/health", {USER_HEALTH_TAGS})\n'
        in conflict
    )
    assert (
        f'=======\nrouter = APIRouter(prefix="/health", {TEMPLATE_HEALTH_TAGS})\n>>>>>>>'
        in conflict
    )
    assert f"  {HEALTH}  (conflict markers inline)" in output
    # The contract waits for the conflict: the app cannot run with markers in it.
    assert "openapi.json: not written again (" in output

    # Resolved as the README says: keep the project's side.
    git(path, "checkout", "--ours", "--", HEALTH)
    git(path, "add", HEALTH)
    assert USER_HEALTH_TAGS in (path / HEALTH).read_text()
    # Then the contract, as the update said: both sides' endpoints, never a marker.
    project.run("uv", "run", "--locked", "python", "-m", "commands.openapi")
    contract = json.loads((path / "openapi.json").read_text())
    assert {USER_PATH, AUDIT_PATH} <= set(contract["paths"])

    # 4. The gates of the updated project, on the database that was at the project's head.
    project.run("uv", "sync", "--locked")
    project.run("uv", "run", "--locked", "ruff", "check", ".")
    project.run("uv", "run", "--locked", "ruff", "format", "--check", ".")
    project.run("uv", "run", "--locked", "mypy")  # strict, app included
    upgrade = project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=database)
    assert f"Running upgrade {changed_project.revision} -> {AUDIT_REVISION}" in upgrade
    heads = project.run("uv", "run", "--locked", "alembic", "heads").split()
    assert heads == [AUDIT_REVISION, "(head)"]
    project.run("uv", "run", "--locked", "alembic", "check", env=database)
    # The suite migrates its own database from nothing, and down and up again.
    suite = project.run("uv", "run", "--locked", "pytest", env=database)
    assert " passed" in suite
    assert " failed" not in suite


def test_with_conflict_rej_the_overlap_is_left_in_a_rej_file(
    changed_project: ChangedProject, tmp_path: Path
) -> None:
    project = clone(changed_project, tmp_path / "project")

    result = copier(
        project,
        *("update", "--trust", "--defaults", "--vcs-ref", NEW_VERSION),
        *("--conflict", "rej", "--context-lines", "1"),
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # No marker anywhere: the update hook wrote the contract again from the updated app.
    assert status(project) == RELEASE_CHANGES | {
        f" M {HEALTH}",
        f"?? {HEALTH}.rej",
        " M openapi.json",
    }
    assert files_with_markers(project) == []
    contract = json.loads((project.path / "openapi.json").read_text())
    assert {USER_PATH, AUDIT_PATH} <= set(contract["paths"])
    assert "openapi.json: written again from the updated app" in output
    # The file takes the template's line; the project's own waits in the .rej file.
    assert TEMPLATE_HEALTH_TAGS in (project.path / HEALTH).read_text()
    rejected = (project.path / f"{HEALTH}.rej").read_text()
    assert f'+router = APIRouter(prefix="/health", {USER_HEALTH_TAGS})\n' in rejected
    assert f"  {HEALTH}.rej  (the hunks of yours that did not apply)" in output
    assert USER_LOGIN_LIFETIME in (project.path / "app/core/config.py").read_text()
    # The update workflow's check stops there, naming the file.
    leftovers = run_workflow_step(project, "leftovers", tmp_path / "outputs")
    assert leftovers.returncode == 1
    assert f"::error file={HEALTH}.rej::" in leftovers.stdout


def test_turning_an_option_on_adds_exactly_its_files(
    releases: Path, changed_project: ChangedProject, tmp_path: Path
) -> None:
    project = clone(changed_project, tmp_path / "project")

    result = copier(
        project,
        *("update", "--trust", "--defaults", "--vcs-ref", ":current:"),
        *("--data", "docker=true"),
    )

    assert result.returncode == 0, result.stdout + result.stderr
    docker_files = ["Dockerfile", "docker-compose-dev.yml", ".dockerignore"]
    # The README gains its Docker section, AGENTS.md its image; nothing else changes.
    assert status(project) == {
        " M .copier-answers.yml",
        " M AGENTS.md",
        " M README.md",
        *(f"?? {name}" for name in docker_files),
    }
    assert "docker: true\n" in (project.path / ".copier-answers.yml").read_text()
    fresh = tmp_path / "fresh"
    run_copy(
        str(releases),
        fresh,
        data={**ANSWERS, "docker": True},
        defaults=True,
        vcs_ref=OLD_VERSION,
        quiet=True,
    )
    for name in ["README.md", "AGENTS.md", *docker_files]:
        assert (project.path / name).read_text() == (fresh / name).read_text(), name


def test_when_both_sides_changed_dependencies_the_readme_recipe_relocks(
    changed_project: ChangedProject, dependency_release: str, tmp_path: Path
) -> None:
    project = clone(changed_project, tmp_path / "project")

    result = copier(project, "update", "--trust", "--defaults", "--vcs-ref", dependency_release)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    pyproject = (project.path / "pyproject.toml").read_text()
    assert f'"{USER_DEPENDENCY}>=' in pyproject
    assert f'"{TEMPLATE_DEPENDENCY}>=' in pyproject
    assert not MARKER.search(pyproject)
    # Both changed the project's own entry of the lock: it conflicts, and the update says so.
    assert "UU uv.lock" in status(project)
    assert "  uv.lock  (conflict markers inline)" in output
    # The project cannot run until then: its contract waits, and the update says for what.
    assert "openapi.json: not written again (" in output
    assert "run `uv run python -m commands.openapi`" in output
    # The README's recipe: the project's own lock, resolved again for the merged pyproject.toml.
    git(project.path, "checkout", "HEAD", "--", "uv.lock")
    project.run("uv", "lock")
    project.run("uv", "sync", "--locked")
    packages = tomllib.loads((project.path / "uv.lock").read_text())["package"]
    (own,) = (package for package in packages if package["name"] == "billing-api")
    dependencies = {dependency["name"] for dependency in own["dependencies"]}
    assert {USER_DEPENDENCY, TEMPLATE_DEPENDENCY} <= dependencies


def run_workflow_step(
    project: Project, step_id: str, outputs: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """A step of the project's template-update workflow, run as GitHub runs it.

    Bash with `-eo pipefail`, `GITHUB_OUTPUT` a file, and the Copier of this
    environment where the workflow installs its own.
    """
    workflow = yaml.safe_load((project.path / UPDATE_WORKFLOW).read_text())
    (script,) = [
        step["run"] for step in workflow["jobs"]["update"]["steps"] if step.get("id") == step_id
    ]
    path = f"{Path(COPIER).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=project.path,
        env=project_env(GITHUB_OUTPUT=str(outputs), PATH=path, **env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_update_workflow_updates_on_a_branch_and_stops_on_a_conflict(
    changed_project: ChangedProject, tmp_path: Path
) -> None:
    project = clone(changed_project, tmp_path / "project")
    outputs = tmp_path / "outputs"

    check = run_workflow_step(project, "check", outputs)
    assert check.returncode == 0, check.stdout + check.stderr
    assert outputs.read_text() == f"current={OLD_VERSION}\nlatest={NEW_VERSION}\n"

    update = run_workflow_step(project, "update", outputs, LATEST=NEW_VERSION)
    assert update.returncode == 0, update.stdout + update.stderr
    branch = f"template-update/{NEW_VERSION}"
    assert outputs.read_text().endswith(f"branch={branch}\n")
    assert git(project.path, "branch", "--show-current") == f"{branch}\n"
    assert f"_commit: {NEW_VERSION}\n" in (project.path / ".copier-answers.yml").read_text()

    # The conflict on the line both sides changed stops the run before anything is pushed.
    leftovers = run_workflow_step(project, "leftovers", outputs)
    assert leftovers.returncode == 1
    assert leftovers.stdout.splitlines() == [
        f"::error file={HEALTH}::conflict markers left by copier update"
    ]
    assert "Updating from the template" in leftovers.stderr

    # Settled, the check passes; committed, the project is at the newest release.
    git(project.path, "checkout", "--ours", "--", HEALTH)
    git(project.path, "add", "--all")
    assert run_workflow_step(project, "leftovers", outputs).returncode == 0
    git(project.path, "commit", "-q", "-m", "Update from the template")
    outputs.unlink()
    check = run_workflow_step(project, "check", outputs)
    assert check.returncode == 0, check.stdout + check.stderr
    assert outputs.read_text() == f"current={NEW_VERSION}\nlatest=\n"


def snapshot(project: Project) -> tuple[str, str, str]:
    """The commit, the status and the uncommitted changes: all an update could disturb."""
    return (
        git(project.path, "rev-parse", "HEAD"),
        git(project.path, "status", "--porcelain", "--untracked-files=all"),
        git(project.path, "diff", "HEAD"),
    )


@pytest.mark.parametrize(
    ("arguments", "dirty", "message"),
    [
        (
            ["--trust", "--defaults"],
            True,
            "Destination repository is dirty; cannot continue",
        ),
        (
            ["--trust", "--defaults", "--vcs-ref", "9.9.9"],
            False,
            "Unknown revision: '9.9.9'",
        ),
        (
            ["--trust", "--defaults", "--data", "author_email=not-an-email"],
            False,
            'author_email must be an e-mail address such as "team@example.com"',
        ),
        (
            ["--defaults"],
            False,
            "Template uses potentially unsafe feature: migrations",
        ),
    ],
    ids=["dirty working tree", "unknown version", "bad answer", "without --trust"],
)
def test_a_failed_update_says_why_and_leaves_the_project_as_it_was(
    changed_project: ChangedProject,
    tmp_path: Path,
    arguments: list[str],
    dirty: bool,
    message: str,
) -> None:
    project = clone(changed_project, tmp_path / "project")
    if dirty:
        with (project.path / "README.md").open("a") as readme:
            readme.write("Work in progress.\n")
    before = snapshot(project)

    result = copier(project, "update", *arguments)

    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert snapshot(project) == before


def test_check_update_reports_the_new_release(
    changed_project: ChangedProject, tmp_path: Path
) -> None:
    project = clone(changed_project, tmp_path / "project")

    result = copier(project, "check-update", "--output-format", "json")

    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == {
        "update_available": True,
        "current_version": OLD_VERSION,
        "latest_version": NEW_VERSION,
    }


def test_an_update_from_the_release_before_the_deploy_question_records_its_default(
    tmp_path: Path,
) -> None:
    releases = snapshot_template(tmp_path / "releases")
    working_tree = git(releases, "rev-parse", "HEAD").strip()
    remove_deploy_question(releases)
    git(releases, "commit", "-qam", "Release 0.6.1")
    tag(releases, "0.6.1")
    git(releases, "checkout", working_tree, "--", ".")
    git(releases, "commit", "-qm", "Release 0.7.0: the deploy question")
    tag(releases, "0.7.0")
    path = tmp_path / "project"
    run_copy(str(releases), path, data=ANSWERS, defaults=True, vcs_ref="0.6.1", quiet=True)
    assert "deploy" not in (path / ".copier-answers.yml").read_text()
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Generated from the template")
    project = Project(path, ANSWERS)

    result = copier(project, "update", "--trust", "--defaults")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "deploy: none\n" in (path / ".copier-answers.yml").read_text()
    # The question's line in AGENTS.md, and nothing else: no file of the option, no conflict.
    assert status(project) == {" M .copier-answers.yml", " M AGENTS.md"}
    assert files_with_markers(project) == []
    assert not (path / "deploy").exists()


@pytest.fixture(scope="module")
def sessions_releases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.6.1 as released (this repository's history), then the working tree as 0.7.0."""
    return past_release_then_working_tree(
        tmp_path_factory.mktemp("sessions-releases"),
        SESSIONLESS_RELEASE,
        SESSIONLESS_VERSION,
        SESSIONS_VERSION,
    )


def test_update_to_sessions_migrates_a_database_with_its_own_migration_keeping_its_data(
    sessions_releases: Path, scratch: Path, databases: Databases
) -> None:
    path = scratch / "project"
    run_copy(
        str(sessions_releases),
        path,
        data=SESSIONS_ANSWERS,
        defaults=True,
        vcs_ref=SESSIONLESS_VERSION,
        quiet=True,
    )
    assert not list((path / VERSIONS).glob("*_sessions.py"))
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Generated from the template")
    add_invoices(path)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "Our invoices")
    project = Project(path, SESSIONS_ANSWERS)
    database = {"DATABASE_URL": databases.url, "TEST_DATABASE_URL": databases.test_url}
    project.run("uv", "sync", "--locked")
    # Deployed: at the project's own migration, with a user, a token and an invoice.
    project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=database)
    rows = {
        "users": "SELECT id, email, hashed_password, is_active FROM users",
        "access_token": "SELECT token, user_id, created_at FROM access_token",
        "invoices": "SELECT id, number FROM invoices",
    }
    with psycopg.connect(databases.url.replace("+asyncpg", ""), autocommit=True) as connection:
        connection.execute(
            "INSERT INTO users (email, hashed_password, is_active, is_superuser, is_verified)"
            " VALUES ('ada@example.com', '$argon2id$stored', true, false, true)"
        )
        connection.execute(
            "INSERT INTO access_token (token, user_id, created_at)"
            " SELECT 'a-token-from-before', id, now() FROM users"
        )
        connection.execute("INSERT INTO invoices (number) VALUES ('2026-0001')")
        before = {table: connection.execute(query).fetchall() for table, query in rows.items()}

    result = copier(project, "update", "--trust", "--defaults")

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The project had imported its model in app/db/base.py, which now imports every
    # module of app/db/models/ itself: the one conflict, settled as CHANGELOG says.
    assert files_with_markers(project) == [BASE]
    git(path, "checkout", "--theirs", "--", BASE)
    git(path, "add", BASE)
    [migration] = (path / VERSIONS).glob("*_sessions.py")
    assert parse_revision(migration.read_text()) == ("0002", (INVOICE_REVISION,))
    assert f"now follows your migration {INVOICE_REVISION}" in output
    project.run("uv", "sync", "--locked")
    upgrade = project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=database)
    assert f"Running upgrade {INVOICE_REVISION} -> 0002" in upgrade
    project.run("uv", "run", "--locked", "alembic", "check", env=database)
    with psycopg.connect(databases.url.replace("+asyncpg", ""), autocommit=True) as connection:
        after = {table: connection.execute(query).fetchall() for table, query in rows.items()}
        tokens = connection.execute("SELECT session_id FROM access_token").fetchall()
    assert after == before
    # The token from before the update belongs to no session, and still works until it expires.
    assert tokens == [(None,)]
