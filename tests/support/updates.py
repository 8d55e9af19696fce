"""Running `copier update` in a project and reading what it left, and releases made of
this repository's history, for the update tests (tests/updating/).
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.project import ROOT, Project, git, project_env, working_tree_files
from tests.support.update_scenario import tag

COPIER = str(Path(sys.executable).parent / "copier")
MARKER = re.compile(r"^(<<<<<<<|>>>>>>>) ", re.MULTILINE)


def copier(project: Project, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COPIER, *arguments],
        cwd=project.path,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def status(project: Project) -> set[str]:
    return set(git(project.path, "status", "--porcelain", "--untracked-files=all").splitlines())


def files_with_markers(project: Project) -> list[str]:
    return [
        str(path.relative_to(project.path))
        for path in project.files()
        if MARKER.search(path.read_text(errors="replace"))
    ]


def past_release_then_working_tree(
    repository: Path, commit: str, version: str, next_version: str
) -> Path:
    """A template repository of two releases: `commit` of this repository's history as
    `version`, then the working tree as `next_version`.
    """
    archive = subprocess.run(
        ["git", "archive", commit], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(repository)], input=archive, check=True)
    git(repository, "init", "-q", "-b", "main")
    tag(repository, version)
    for path in repository.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in working_tree_files():
        target = repository / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    tag(repository, next_version)
    return repository
