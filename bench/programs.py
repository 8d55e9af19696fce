"""The programs the benchmark runs besides Python: found on PATH, or how to install them."""

import shutil


class ProgramMissingError(Exception):
    pass


def program_path(name: str, needed_for: str, install: str) -> str:
    """The path of `name`, or an error that says what it is for and how to install it."""
    path = shutil.which(name)
    if path is None:
        raise ProgramMissingError(f"{name} is not installed: {needed_for} need it ({install})")
    return path
