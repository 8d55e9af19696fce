"""README.md's two commands are the ones the tests and CI run, and its links lead somewhere.

The first command is run word for word by `tests/serving/test_fresh_machine.py` (with
the locked copier in place of `uvx copier`), which then serves the project with the
script it names; here: that the pieces fit, and that CI runs the second.
"""

import re

import pytest

from tests.support.project import ROOT, working_tree_files
from tests.support.readme import copy_and_start, readme_commands

MARKDOWN_LINK = re.compile(r"\]\((?!https?://|#)([^)\s#]+)")


def test_the_first_command_renders_a_project_then_starts_that_project() -> None:
    copy, start = copy_and_start()
    assert copy[:3] == ["uvx", "copier", "copy"]
    assert copy[-2] == "$PWD", "the template is this checkout"
    assert start == f"{copy[-1]}/start.sh"


def test_ci_runs_the_readmes_test_command() -> None:
    words = readme_commands()[1].split()
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line.split()[-len(words) :] == words for line in ci_lines if line.strip()), (
        f".ci/run never runs `{' '.join(words)}`"
    )


@pytest.mark.parametrize("readme", ["README.md", "bench/README.md", "CHANGELOG.md"])
def test_links_lead_to_files_the_repository_ships(readme: str) -> None:
    """Relative links resolve inside this repository: a clone has nothing beside it."""
    shipped = set(working_tree_files())
    folder = (ROOT / readme).parent
    for target in MARKDOWN_LINK.findall((ROOT / readme).read_text()):
        resolved = (folder / target).resolve()
        assert resolved.is_relative_to(ROOT), f"{readme} links outside the repository: {target}"
        relative = resolved.relative_to(ROOT).as_posix()
        assert relative in shipped or any(name.startswith(f"{relative}/") for name in shipped), (
            f"{readme} links to {target}, which the repository does not ship"
        )
