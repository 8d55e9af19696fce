"""After `copier copy`, the message names the three next commands for the real folder."""

import subprocess
import sys
from pathlib import Path


def test_message_after_copy_enters_the_folder_starts_and_tests(
    template: Path, tmp_path: Path
) -> None:
    where_copier_runs = tmp_path / "work"
    where_copier_runs.mkdir()
    # Relative, as people type it, and with a space that the shell must not split.
    destination = "../my service"

    result = subprocess.run(
        [
            *(sys.executable, "-m", "copier", "copy", "--defaults", "--vcs-ref", "HEAD"),
            *("--data", "project_name=My Service", str(template), destination),
        ],
        cwd=where_copier_runs,
        capture_output=True,
        text=True,
        check=True,
    )

    message = result.stdout + result.stderr
    after = message[message.index("Your service is ready in ../my service. Next:") :]
    steps = [line.split("#")[0].strip() for line in after.splitlines()[1:] if line.strip()]
    assert steps == ["cd '../my service'", "./start.sh", "uv run pytest"]
    # The `cd` line, run where copier ran, reaches the project and its start script.
    entered = subprocess.run(
        ["bash", "-c", f"{steps[0]} && test -x start.sh && pwd"],
        cwd=where_copier_runs,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(entered.stdout.strip()) == (tmp_path / "my service").resolve()
