"""`uv run python -m bench.mutmut [--modules M ...] [--pytest-args='A ...']`: mutmut over a
default render.

Breadth beyond the hand-written catalogue of tests/support/mutations.py: mutmut
(PyPI) mutates every operator, constant and call of the security-critical modules of
a default render of the working tree, runs the render's suite against each mutant,
and this prints the score and each surviving mutant's diff. Slow (hours for every
module on 2 cores), so not in CI; bench/MUTATION.md holds the last run and a
judgement of each survivor. Needs PostgreSQL (TEST_DATABASE_URL, or
postgresql://postgres@127.0.0.1:5432/postgres).
"""

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.databases import fresh_databases
from tests.support.project import project_env, render, snapshot_template

MUTMUT = "mutmut==3.8.1"
# Authentication and tokens, logins, the login limit, the middlewares, the production checks.
SECURITY_CRITICAL = (
    "app/core/access_tokens.py",
    "app/core/logins.py",
    "app/core/users.py",
    "app/core/user_manager.py",
    "app/core/security.py",
    "app/api/login_limit.py",
    "app/api/middleware.py",
    "app/core/config.py",
)


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{value}"' for value in values) + "]"


def configure(project: Path, modules: list[str], pytest_args: list[str]) -> None:
    """mutmut's settings, appended to the render's pyproject.toml."""
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write(
            "\n[tool.mutmut]\n"
            'source_paths = ["app"]\n'
            # A mutant that hangs a request is caught; waiting 15 times the tests' time
            # (mutmut's default) for each made the run hours longer.
            "timeout_multiplier = 2.0\n"
            f"only_mutate = {toml_list(modules)}\n"
            f"pytest_add_cli_args = {toml_list(pytest_args)}\n"
            # What the suite reads beside the code: migrations, commands, docs, settings.
            'also_copy = ["alembic_migrations", "alembic.ini", "commands", "conftest.py", '
            '"openapi.json", ".env.example", "README.md", "AGENTS.md", "start.sh", '
            '".python-version", ".copier-answers.yml"]\n'
            'pytest_add_cli_args_test_selection = ["tests"]\n'
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", default=list(SECURITY_CRITICAL))
    parser.add_argument(
        "--pytest-args",
        default="",
        help="for the render's pytest, as one string: --pytest-args='--deselect tests/x.py::t'",
    )
    arguments = parser.parse_args()
    os.environ.setdefault("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

    folder = Path(tempfile.mkdtemp(prefix="bench-mutmut-"))
    template = snapshot_template(folder / "template")
    project = render(template, folder / "project", {"project_name": "Mutants"})
    env = project_env()
    subprocess.run(["uv", "sync", "--locked"], cwd=project, env=env, check=True)
    subprocess.run(["uv", "pip", "install", "-q", MUTMUT], cwd=project, env=env, check=True)
    configure(project, arguments.modules, shlex.split(arguments.pytest_args))
    with fresh_databases() as databases:
        env = project_env(TEST_DATABASE_URL=databases.test_url, DATABASE_URL=databases.url)
        subprocess.run(
            # One child: the render's suite empties its one test database at start-up,
            # which a second child's tests would wait on (and mutmut count as timeouts).
            [".venv/bin/mutmut", "run", "--max-children", "1"],
            cwd=project,
            env=env,
            check=False,
        )
        results = subprocess.run(
            [".venv/bin/mutmut", "results", "--all", "true"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    print(results)
    survivors = [line.split(":")[0].strip() for line in results.splitlines() if "survived" in line]
    for name in survivors:
        shown = subprocess.run(
            [".venv/bin/mutmut", "show", name],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
        )
        print(f"## {name}\n{shown.stdout}")
    print(f"The render, its mutants and mutmut's results stay in {project}", file=sys.stderr)


if __name__ == "__main__":
    main()
