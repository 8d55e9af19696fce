"""The rendered README's "Run it in production" section, run as written.

Its ```bash production block runs in the image's environment (the Dockerfile's
ENV, with PATH leading to the project's virtualenv, as the image's does) and
nothing else: no variable of this machine leaks in. One word is the reader's to
replace, and the test replaces it: the database URL. The block migrates, then
starts the image's command, which must answer /api/health/ready with 200 and
write nothing but JSON lines. (The image itself, its user and read-only root,
is tests/serving/test_image.py's.)
"""

import contextlib
import json
import re
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.databases import Databases
from tests.support.dockerfile import BASE_ENV, parse
from tests.support.ports import free_port
from tests.support.project import Project
from tests.support.service import stop_process_group

BLOCK = re.compile(r"^( *)```bash production\n(.*?)^\1```$", re.MULTILINE | re.DOTALL)
PLACEHOLDER_URL = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
START_TIMEOUT_SECONDS = 120.0


def production_block(readme: str) -> str:
    [(indent, body)] = BLOCK.findall(readme)
    return "\n".join(line.removeprefix(indent) for line in body.splitlines())


def test_the_readme_section_describes_what_the_image_runs(project: Project) -> None:
    block = production_block((project.path / "README.md").read_text())
    image = parse((project.path / "Dockerfile").read_text())

    assert block.splitlines()[-1].split("#")[0].split() == image.cmd
    assert PLACEHOLDER_URL in block
    assert f"export ENVIRONMENT={image.env['ENVIRONMENT']} " in block


def test_the_readme_section_serves_json_logs_and_is_ready(
    project: Project, databases: Databases, tmp_path: Path
) -> None:
    script = production_block((project.path / "README.md").read_text())
    script = script.replace(PLACEHOLDER_URL, databases.url)
    image = parse((project.path / "Dockerfile").read_text())
    port = free_port()
    env = {
        **image.env,
        # The image's PATH leads to its virtualenv first; here, the project's.
        "PATH": f"{project.path / '.venv' / 'bin'}:{BASE_ENV['PATH']}",
        "PORT": str(port),
    }
    log = tmp_path / "production.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=project.path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            assert process.poll() is None, f"the section's commands stopped:\n{log.read_text()}"
            with contextlib.suppress(httpx.TransportError):
                ready = httpx.get(f"http://127.0.0.1:{port}/api/health/ready", timeout=2)
                if ready.status_code == 200:
                    break
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()}"
            time.sleep(0.2)
        assert ready.json() == {"status": "ok", "database": "ok"}
    finally:
        stop_process_group(process)

    assert process.returncode == 0, log.read_text()
    lines = log.read_text().splitlines()
    # Alembic's lines first (its own text format), then the service's: JSON, every one.
    served = lines[next(number for number, line in enumerate(lines) if line.startswith("{")) :]
    entries = [json.loads(line) for line in served]
    assert {entry["message"] for entry in entries} >= {
        "Application startup complete.",
        "Database connections closed",
    }
