"""The scripts Copier runs in a project after `copier update` (hooks/).

The pure parts are checked on literal inputs; the entry points on real git
repositories, the way Copier leaves a project after an update: the last
commit holds the project before the update, the working tree the result.
"""

from pathlib import Path

import pytest

from hooks import linear_migrations, openapi_contract, update_report
from hooks.linear_migrations import ForkedHistoryError, Move, heads, plan
from tests.support.project import git

MIGRATION = '''"""{message}

Revision ID: {revision}
Revises: {down}
Create Date: 2026-11-26 00:00:00+00:00
"""

from collections.abc import Sequence

revision: str = "{revision}"
down_revision: str | Sequence[str] | None = {down_literal}
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass
'''


def migration(revision: str, down: str | None, message: str = "a change") -> str:
    return MIGRATION.format(
        message=message,
        revision=revision,
        down=down or "",
        down_literal=f'"{down}"' if down else "None",
    )


class TestParseRevision:
    def test_reads_annotated_assignments(self) -> None:
        assert linear_migrations.parse_revision(migration("0002", "0001")) == ("0002", ("0001",))

    def test_the_first_migration_revises_nothing(self) -> None:
        assert linear_migrations.parse_revision(migration("0001", None)) == ("0001", ())

    def test_reads_plain_assignments_and_merges(self) -> None:
        source = 'revision = "m1"\ndown_revision = ("a1", "b1")\n'

        assert linear_migrations.parse_revision(source) == ("m1", ("a1", "b1"))

    @pytest.mark.parametrize(
        "source",
        [
            '"""Not a migration."""\nrevision = "x"\n',
            "<<<<<<< before updating\nrevision = 'a'\n=======\n",
            "revision = make_id()\ndown_revision = None\n",
        ],
        ids=["no down_revision", "conflict markers", "computed id"],
    )
    def test_anything_else_is_not_a_migration(self, source: str) -> None:
        assert linear_migrations.parse_revision(source) is None


def test_heads_are_the_revisions_nothing_revises() -> None:
    assert heads({"1": (), "2": ("1",), "a": ("1",), "m": ("2", "a"), "3": ("m",)}) == {"3"}
    assert heads({"1": (), "2": ("1",), "a": ("1",)}) == {"2", "a"}


# The template's first migration, then two of the project's own.
BEFORE = {"0001": (), "u1": ("0001",), "u2": ("u1",)}


class TestPlan:
    def test_a_line_stays_as_it_is(self) -> None:
        assert plan(BEFORE, {**BEFORE, "t": ("u2",)}) is None

    def test_template_migrations_move_after_the_projects_head(self) -> None:
        after = {**BEFORE, "0002": ("0001",), "0003": ("0002",)}

        assert plan(BEFORE, after) == Move(revision="0002", onto="u2")

    def test_a_project_without_migrations_of_its_own_needs_no_move(self) -> None:
        assert plan({"0001": ()}, {"0001": (), "0002": ("0001",)}) is None

    def test_a_project_with_two_heads_of_its_own_is_left_to_its_authors(self) -> None:
        before = {"0001": (), "a": ("0001",), "b": ("0001",)}

        with pytest.raises(ForkedHistoryError, match="yours before the update: a, b"):
            plan(before, {**before, "0002": ("0001",)})

    def test_two_independent_new_branches_are_left_to_the_authors(self) -> None:
        with pytest.raises(ForkedHistoryError, match="new: 0002, 0003"):
            plan(BEFORE, {**BEFORE, "0002": ("0001",), "0003": ("0001",)})


def test_set_down_revision_changes_the_parent_and_nothing_else() -> None:
    source = migration("0002", "0001", message="Audit events: où, quand")

    moved = linear_migrations.set_down_revision(source, "d148511a567f")

    assert moved == migration("0002", "d148511a567f", message="Audit events: où, quand")
    assert linear_migrations.parse_revision(moved) == ("0002", ("d148511a567f",))


def test_set_down_revision_replaces_a_multiline_value() -> None:
    source = 'revision = "m"\ndown_revision = (\n    "a",\n    "b",\n)\nx = 1\n'

    assert linear_migrations.set_down_revision(source, "c") == (
        'revision = "m"\ndown_revision = "c"\nx = 1\n'
    )


def project_with_history(path: Path, committed: dict[str, str]) -> Path:
    versions = path / linear_migrations.VERSIONS
    versions.mkdir(parents=True)
    for name, source in committed.items():
        (versions / name).write_text(source)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "the project before the update")
    return versions


class TestLinearMigrationsScript:
    def test_moves_the_arrived_migration_after_the_projects_own(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        versions = project_with_history(
            tmp_path,
            {"0001_initial.py": migration("0001", None), "ab_tags.py": migration("ab", "0001")},
        )
        (versions / "0002_audit.py").write_text(migration("0002", "0001"))

        assert linear_migrations.main(tmp_path) == 0

        assert (versions / "0002_audit.py").read_text() == migration("0002", "ab")
        assert (versions / "ab_tags.py").read_text() == migration("ab", "0001")
        assert "0002 (0002_audit.py) now follows your migration ab" in capsys.readouterr().err

    def test_leaves_a_fork_it_cannot_settle_and_says_what_to_do(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        committed = {
            "0001_initial.py": migration("0001", None),
            "a_one.py": migration("a", "0001"),
            "b_two.py": migration("b", "0001"),
        }
        versions = project_with_history(tmp_path, committed)
        (versions / "0002_audit.py").write_text(migration("0002", "0001"))

        assert linear_migrations.main(tmp_path) == 0

        assert (versions / "0002_audit.py").read_text() == migration("0002", "0001")
        assert "several migration heads after the update" in capsys.readouterr().err

    def test_says_nothing_when_no_migration_arrived(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        project_with_history(tmp_path, {"0001_initial.py": migration("0001", None)})

        assert linear_migrations.main(tmp_path) == 0

        assert capsys.readouterr().err == ""


def test_conflict_markers_are_copiers_labels_at_line_starts() -> None:
    assert update_report.has_conflict_markers("a\n<<<<<<< before updating\nb\n")
    assert update_report.has_conflict_markers("a\n>>>>>>> after updating  \n")
    assert not update_report.has_conflict_markers("a = '<<<<<<< before updating'\n")


def test_report_lists_each_file_with_its_kind_of_conflict() -> None:
    message = update_report.report(inline=["b.py", "a.py"], rejected=["c.py.rej"])

    assert message.splitlines()[1:4] == [
        "  a.py  (conflict markers inline)",
        "  b.py  (conflict markers inline)",
        "  c.py.rej  (the hunks of yours that did not apply)",
    ]
    assert "git checkout --ours FILE" in message
    assert "from each .rej file" in message


def test_report_explains_only_the_kinds_of_conflict_there_are() -> None:
    assert "rej" not in update_report.report(inline=["a.py"], rejected=[])
    assert "--ours" not in update_report.report(inline=[], rejected=["a.py.rej"])
    assert update_report.report(inline=[], rejected=[]) == ""


def test_report_script_finds_markers_and_rejects_in_the_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("merged.py", "conflicted.py", "ignored.txt"):
        (tmp_path / name).write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("*.rej\n")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "the project before the update")
    (tmp_path / "merged.py").write_text("x = 2\n")
    (tmp_path / "conflicted.py").write_text(
        "<<<<<<< before updating\nx = 1\n=======\nx = 3\n>>>>>>> after updating\n"
    )
    (tmp_path / "new.py").write_text("y = 1\n")
    (tmp_path / "merged.py.rej").write_text("@@ -1 +1 @@\n-x = 1\n+x = 4\n")

    assert update_report.main(tmp_path) == 0

    err = capsys.readouterr().err
    assert "  conflicted.py  (conflict markers inline)" in err
    assert "  merged.py.rej  (the hunks of yours that did not apply)" in err
    assert "merged.py  (conflict" not in err
    assert "new.py" not in err


def test_report_script_is_silent_after_a_clean_update(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "the project before the update")
    (tmp_path / "a.py").write_text("x = 2\n")

    assert update_report.main(tmp_path) == 0

    assert capsys.readouterr().err == ""


class TestOpenapiContract:
    """The entry point's decisions; that it writes the contract of a real updated project
    is tests/updating/test_update.py's.
    """

    def test_a_project_without_the_command_is_left_alone(self, tmp_path: Path) -> None:
        assert openapi_contract.regenerate(tmp_path) == ""

    def test_without_uv_it_says_what_to_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "commands").mkdir()
        (tmp_path / "commands" / "openapi.py").write_text("")
        monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))

        message = openapi_contract.regenerate(tmp_path)

        assert message.startswith("openapi.json: not written again (uv is not on PATH)")
        assert "`uv run python -m commands.openapi`" in message

    def test_a_project_that_cannot_run_yet_says_why_in_one_line(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stand-in for uv, failing as it does on a stale lock."""
        (tmp_path / "commands").mkdir()
        (tmp_path / "commands" / "openapi.py").write_text("")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        uv = bin_dir / "uv"
        uv.write_text(
            "#!/bin/sh\n"
            "echo 'Resolved 80 packages' >&2\n"
            "echo 'error: the lockfile needs to be updated' >&2\n"
            "exit 1\n"
        )
        uv.chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir))

        message = openapi_contract.regenerate(tmp_path)

        assert "(error: the lockfile needs to be updated)" in message
        assert "\n" not in message
