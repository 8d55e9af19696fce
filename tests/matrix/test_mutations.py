"""Every promise of the rendered README is guarded: each mutation of the catalogue
(tests/support/mutations.py), a small realistic bug that breaks one, makes the render's
own suite fail.

One default render and one database serve every mutation. Each mutation runs the
promise's own test modules first and stops at the first failure; the file is restored
afterwards, whatever happens. `uv run pytest -k mutation` runs just these.
"""

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.databases import fresh_databases
from tests.support.matrix import answers_for
from tests.support.mutations import CATALOGUE, Mutation
from tests.support.project import Project, outside_pytest_tmp, project_env, render

# A row of the Security table: | guarantee | tests |
GUARANTEE_ROW = re.compile(r"^\| (?!Guarantee |---)(.+?) \| [^|]+ \|$", re.MULTILINE)


@dataclass(frozen=True)
class Mutant:
    """The render that mutations are applied to, and its test database."""

    path: Path
    database_url: str  # migrated to head: `alembic check` compares the models with it
    test_database_url: str


@pytest.fixture(scope="module")
def mutant(template: Path) -> Iterator[Mutant]:
    """A default render of its own (mutated in place, so shared with no other test),
    installed, on a fresh test database, whose unmutated suite passes.
    """
    with outside_pytest_tmp("template-mutations-") as folder, fresh_databases() as databases:
        answers = answers_for("defaults")
        project = Project(render(template, folder / "project", answers), answers)
        project.run("uv", "sync", "--locked")
        project.run("uv", "run", "alembic", "upgrade", "head", env={"DATABASE_URL": databases.url})
        mutant = Mutant(project.path, databases.url, databases.test_url)
        result = run_checks(mutant, Mutation("none", "", "", "", "", ()))
        assert result.returncode == 0, f"the unmutated suite fails:\n{tail(result)}"
        yield mutant


def run_checks(mutant: Mutant, mutation: Mutation) -> subprocess.CompletedProcess[str]:
    """The mutation's check: its promise's test modules up to the first failure; when they
    all pass, the whole suite (collecting it all costs more than most modules' tests).
    """
    bin_folder = mutant.path / ".venv" / "bin"
    if mutation.command:
        program, *arguments = mutation.command
        return run(mutant, [str(bin_folder / program), *arguments])
    pytest = [str(bin_folder / "python"), "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    if mutation.tests:
        first = run(mutant, [*pytest, *mutation.tests])
        if first.returncode != 0:
            return first
    return run(mutant, [*pytest, "tests"])


def run(mutant: Mutant, command: list[str]) -> subprocess.CompletedProcess[str]:
    env = project_env(DATABASE_URL=mutant.database_url, TEST_DATABASE_URL=mutant.test_database_url)
    return subprocess.run(
        command,
        cwd=mutant.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def tail(result: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-lines:])


@pytest.mark.parametrize("mutation", CATALOGUE, ids=[m.name for m in CATALOGUE])
def test_mutation_is_caught(mutant: Mutant, mutation: Mutation) -> None:
    target = mutant.path / mutation.path
    original = target.read_text()
    mutated = mutation.apply_to(original)
    # The mutated module's bytecode goes with it: a .pyc stamped with the same size and
    # second as the restored source would otherwise be taken for it.
    bytecode = target.parent / "__pycache__"
    shutil.rmtree(bytecode, ignore_errors=True)
    try:
        target.write_text(mutated)
        result = run_checks(mutant, mutation)
    finally:
        target.write_text(original)
        shutil.rmtree(bytecode, ignore_errors=True)

    # pytest's 1 is a test that failed; its other codes are crashes (a mutation that
    # does not even import), which prove nothing about the tests.
    caught = result.returncode != 0 if mutation.command else result.returncode == 1
    assert caught, (
        f"mutation {mutation.name!r} of {mutation.path} breaks the promise "
        f"{mutation.promise!r}, yet `{' '.join(result.args[1:])}` "
        f"{'passes' if result.returncode == 0 else f'exits {result.returncode}'}:\n"
        f"{tail(result)}"
    )


def readme(rendered_defaults: Path) -> str:
    """The rendered README, then AGENTS.md: the promises a render makes."""
    return "\n".join((rendered_defaults / name).read_text() for name in ("README.md", "AGENTS.md"))


def guarantees(text: str) -> list[str]:
    """The guarantees of the README's Security table."""
    security = text.split("\n## Security\n", 1)[1].split("\n### ", 1)[0]
    return GUARANTEE_ROW.findall(security)


def test_mutation_catalogue_covers_every_readme_guarantee(rendered: dict[str, Project]) -> None:
    rows = guarantees(readme(rendered["defaults"].path))
    assert len(rows) >= 10

    unguarded = [row for row in rows if not any(m.promise in row for m in CATALOGUE)]

    assert not unguarded, (
        "these guarantees of the rendered README's Security table name no mutation; add one "
        "per guarantee to tests/support/mutations.py (its `promise`, a phrase of the row):\n"
        + "\n".join(unguarded)
    )


def test_mutation_promises_are_in_the_readme(rendered: dict[str, Project]) -> None:
    text = readme(rendered["defaults"].path)

    stale = {m.name: m.promise for m in CATALOGUE if m.promise not in text}

    assert not stale, (
        "these mutations name a promise the rendered README no longer makes; update the "
        f"promise's phrase in tests/support/mutations.py: {stale}"
    )


def test_mutation_catalogue_has_30_or_more_distinct_mutations() -> None:
    names = [m.name for m in CATALOGUE]
    assert len(set(names)) == len(names) >= 30
    assert len({(m.path, m.old, m.new) for m in CATALOGUE}) == len(CATALOGUE)
