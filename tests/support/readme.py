"""The two commands at the top of README.md, read from its text, so the tests run what it says."""

import re
import shlex
from pathlib import Path

from tests.support.project import ROOT


def readme_commands(readme: Path = ROOT / "README.md") -> tuple[str, str]:
    """The first bash block's two commands: set up and run, then test."""
    match = re.search(r"```bash\n(.*?)```", readme.read_text(), re.DOTALL)
    assert match, "README.md has no bash block"
    commands = [line for line in match[1].splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2, commands
    return commands[0], commands[1]


def copy_and_start() -> tuple[list[str], str]:
    """The first command split at its `&&`: the `copier copy` argv and the script it starts."""
    copy, start = readme_commands()[0].split(" && ")
    return shlex.split(copy), start
