"""Keep a project's Alembic history one line when `copier update` brings migrations.

A template release that adds a table ships a migration revised on the
template's previous one (0002 after 0001). A project that has written its own
migrations since then would get two heads, and `alembic upgrade head` refuses
to choose between them. Copier runs this script in the project after every
update (`_migrations` in copier.yml): it moves the first migration the update
brought after the project's own head, which is when the project receives it.
A database already at that head then simply upgrades through the new ones.

The history before the update is the project's last commit (Copier updates
only clean git trees and commits nothing); the files on disk are the history
after it. Standard library only: it runs on the Python that runs Copier.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

VERSIONS = "alembic_migrations/versions"

# revision id -> the revision ids it revises (none for the first migration)
History = Mapping[str, tuple[str, ...]]


class ForkedHistoryError(Exception):
    """The history forks in a way only the project's authors can settle."""


@dataclass(frozen=True)
class Move:
    revision: str
    onto: str


def parse_revision(source: str) -> tuple[str, tuple[str, ...]] | None:
    """`revision` and `down_revision` of a migration script; None for any other module."""
    values: dict[str, object] = {}
    try:
        for name, node in _assignments(source):
            if name in ("revision", "down_revision"):
                values[name] = ast.literal_eval(node)
    except (SyntaxError, ValueError):  # not Python (conflict markers), or computed ids
        return None
    revision = values.get("revision")
    if not isinstance(revision, str) or "down_revision" not in values:
        return None
    down = values["down_revision"]
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, (list, tuple)):
        return revision, tuple(str(parent) for parent in down)
    return None


def heads(history: History) -> set[str]:
    revised = {parent for parents in history.values() for parent in parents}
    return set(history) - revised


def plan(before: History, after: History) -> Move | None:
    """The move that makes `after` one line again; None when it already is one."""
    if len(heads(after)) <= 1:
        return None
    arrived = after.keys() - before.keys()
    # The first of the arrived migrations: the one that revises none of the others.
    firsts = sorted(revision for revision in arrived if not set(after[revision]) & arrived)
    kept = {revision: after[revision] for revision in before.keys() & after.keys()}
    project_heads = sorted(heads(kept))
    if len(project_heads) != 1 or len(firsts) != 1 or len(after[firsts[0]]) != 1:
        raise ForkedHistoryError(
            f"heads {', '.join(sorted(heads(after)))}; yours before the update: "
            f"{', '.join(project_heads) or 'none'}; new: {', '.join(sorted(arrived)) or 'none'}"
        )
    move = Move(revision=firsts[0], onto=project_heads[0])
    if len(heads({**after, move.revision: (move.onto,)})) != 1:
        raise ForkedHistoryError(f"{move.revision} after {move.onto} still leaves several heads")
    return move


def set_down_revision(source: str, onto: str) -> str:
    """The script revising `onto` instead: its `down_revision` and its docstring's `Revises:`."""
    (node,) = (node for name, node in _assignments(source) if name == "down_revision")
    # ast counts lines from 1 and columns in UTF-8 bytes.
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line.encode()))
    start = line_starts[node.lineno - 1] + node.col_offset
    end = line_starts[_required(node.end_lineno) - 1] + _required(node.end_col_offset)
    encoded = source.encode()
    moved = (encoded[:start] + json.dumps(onto).encode() + encoded[end:]).decode()
    return re.sub(r"^Revises:.*$", f"Revises: {onto}", moved, count=1, flags=re.MULTILINE)


def _assignments(source: str) -> list[tuple[str, ast.expr]]:
    """Module-level `name = value` and `name: type = value` statements."""
    found: list[tuple[str, ast.expr]] = []
    for statement in ast.parse(source).body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if isinstance(target, ast.Name):
            found.append((target.id, value))
    return found


def _required(position: int | None) -> int:
    """Positions of parsed (not hand-built) nodes are always known."""
    if position is None:
        raise ValueError("a parsed node without its position")
    return position


def _git(project: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project, check=True, capture_output=True, text=True
    ).stdout


def committed_history(project: Path) -> History:
    history: dict[str, tuple[str, ...]] = {}
    for name in _git(project, "ls-tree", "--name-only", "HEAD", "--", f"{VERSIONS}/").split("\n"):
        if name.endswith(".py"):
            parsed = parse_revision(_git(project, "show", f"HEAD:./{name}"))
            if parsed:
                history[parsed[0]] = parsed[1]
    return history


def scripts_on_disk(project: Path) -> dict[str, tuple[Path, tuple[str, ...]]]:
    scripts: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for path in sorted((project / VERSIONS).glob("*.py")):
        parsed = parse_revision(path.read_text(encoding="utf-8"))
        if parsed:
            scripts[parsed[0]] = (path, parsed[1])
    return scripts


def main(project: Path) -> int:
    if not (project / VERSIONS).is_dir():
        return 0
    scripts = scripts_on_disk(project)
    before = committed_history(project)
    arrived = sorted(scripts.keys() - before.keys())
    try:
        move = plan(before, {revision: parents for revision, (_, parents) in scripts.items()})
    except ForkedHistoryError as problem:
        print(
            f"Alembic: several migration heads after the update ({problem}).\n"
            "  Make the first of the template's new migrations revise your latest one (its\n"
            "  `down_revision`), so that `uv run alembic heads` shows a single head.",
            file=sys.stderr,
        )
        return 0
    if move:
        path = scripts[move.revision][0]
        path.write_text(set_down_revision(path.read_text(encoding="utf-8"), move.onto), "utf-8")
        print(
            f"Alembic: the template's migration {move.revision} ({path.name}) now follows"
            f" your migration {move.onto}: the history stays one line.",
            file=sys.stderr,
        )
    if arrived:
        print(
            f"Alembic: new migrations {', '.join(arrived)}: run `uv run alembic upgrade head`.",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path.cwd()))
