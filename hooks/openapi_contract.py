"""After `copier update`: write the project's `openapi.json` again, from its own app.

The contract is generated: the project's routes and the template's together
make it. Copier does not merge it (`_skip_if_exists` in copier.yml), which
would leave conflict markers wherever both sides added an endpoint; this
script asks the updated app for its schema instead, the way the project's
README says to (`python -m commands.openapi`). Where the project cannot run
yet (its dependencies changed on both sides, say), it leaves the file alone and
says, in one line, what to run once it can. Standard library only: it runs on
the Python that runs Copier.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

COMMAND = ("uv", "run", "--locked", "python", "-m", "commands.openapi")
# The settings an import of the app needs, none of them used by the schema: the
# project's .env may be missing (CI), and its secrets are none of this script's business.
SETTINGS = {
    "ENVIRONMENT": "test",
    "TEST_DATABASE_URL": "postgresql://unused@localhost/unused",
    **{
        f"{name}_SECRET_KEY": secrets.token_urlsafe(32)
        for name in ("ACCESS", "RESET_PASSWORD", "VERIFICATION")
    },
}


def regenerate(project: Path) -> str:
    """Write the contract again; what to tell the user."""
    if not (project / "commands" / "openapi.py").exists():
        return ""
    environment = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    try:
        result = subprocess.run(
            COMMAND,
            cwd=project,
            env={**environment, **SETTINGS},
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        reason = "uv is not on PATH"
    else:
        if result.returncode == 0:
            return "openapi.json: written again from the updated app; review it with the rest."
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = lines[-1] if lines else f"exit status {result.returncode}"
    return (
        f"openapi.json: not written again ({reason}); once `uv sync --locked` works, "
        f"run `uv run python -m commands.openapi` and commit it."
    )


def main() -> int:
    message = regenerate(Path.cwd())
    if message:
        print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
