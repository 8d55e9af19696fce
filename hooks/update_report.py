"""Say, at the end of `copier update`, which files need a decision.

Copier merges the template's changes into the project quietly: where the
template and the project changed the same lines it writes conflict markers
(`--conflict inline`, the default) or leaves `.rej` files (`--conflict rej`),
and prints nothing about either. Copier runs this script last after every
update (`_migrations` in copier.yml), so that the update ends with the list.
Standard library only: it runs on the Python that runs Copier.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

# The labels Copier gives the two sides of an inline conflict.
MARKERS = ("<<<<<<< before updating", ">>>>>>> after updating")


def has_conflict_markers(text: str) -> bool:
    return any(line.rstrip() in MARKERS for line in text.splitlines())


def report(inline: Iterable[str], rejected: Iterable[str]) -> str:
    """What to tell the user; empty when the update merged cleanly."""
    inline, rejected = sorted(inline), sorted(rejected)
    if not inline and not rejected:
        return ""
    lines = ["Update conflicts: the template and this project changed the same lines."]
    lines += [f"  {name}  (conflict markers inline)" for name in inline]
    lines += [f"  {name}  (the hunks of yours that did not apply)" for name in rejected]
    if inline:
        lines.append(
            "Edit each marked file to what it should be (`git checkout --ours FILE` keeps"
            " yours, `--theirs` takes the template's), then `git add FILE`."
        )
    if rejected:
        lines.append("Apply by hand what you still want from each .rej file, then delete it.")
    lines.append("Then review `git diff`, run the tests, and commit.")
    return "\n".join(lines)


def _git(project: Path, *args: str) -> list[str]:
    output = subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout
    return [name for name in output.split("\0") if name]


def main(project: Path) -> int:
    changed = {
        *_git(project, "diff", "--name-only", "--relative", "-z"),
        *_git(project, "ls-files", "--others", "--exclude-standard", "-z"),
    }
    inline = [
        name
        for name in changed
        if (project / name).is_file()
        and has_conflict_markers((project / name).read_text(encoding="utf-8", errors="replace"))
    ]
    # Ignored files too: a project may ignore *.rej.
    rejected = _git(project, "ls-files", "--others", "-z", "--", "*.rej")
    message = report(inline, rejected)
    if message:
        print(message, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path.cwd()))
