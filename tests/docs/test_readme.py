"""README.md's two commands are the ones the tests and CI run.

The first one is run word for word by `tests/serving/test_fresh_machine.py` (with the
locked copier in place of `uvx copier`), which then serves the project with the
script it names; here: that the pieces fit, and that CI runs the second.
"""

from tests.support.project import ROOT
from tests.support.readme import copy_and_start, readme_commands


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
