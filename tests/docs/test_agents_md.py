"""AGENTS.md stays true: every command it lists runs, every path it names exists.

Its ```bash blocks are run line by line, in order, in a copy of a render (the
migration commands write files), on fresh databases. Its ```bash serve block
holds the commands that serve until stopped: each is started and must answer
/api/health/live. Paths are what its inline code, links and layout tree name.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from tests.support.databases import Databases
from tests.support.matrix import COMBINATIONS
from tests.support.ports import free_port
from tests.support.project import Project, Renders, project_env

FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
FILE_SUFFIXES = (".py", ".md", ".toml", ".ini", ".sh", ".yml", ".lock", ".example", "-version")
# The files the "Adding a resource" walkthrough creates: only their folders exist yet.
NEW_RESOURCE = "invoice"
# Contrasting answer sets: ids, strategy, transport, OAuth, e-mail and the example resource.
COMMAND_COMBINATIONS = ("defaults", "uuid-database-cookie-bare", "both-database-cookie")
SERVE_TIMEOUT_SECONDS = 300


def agents_md(project: Project) -> str:
    return (project.path / "AGENTS.md").read_text()


def commands(text: str, info: str) -> list[str]:
    """The command lines of the fenced blocks whose info string is `info`."""
    return [
        line.strip()
        for block in FENCE.finditer(text)
        if block["info"].strip() == info
        for line in block["body"].splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def tree_paths(text: str) -> list[str]:
    """The paths of the layout tree (the fenced block without an info string)."""
    [tree] = [block["body"] for block in FENCE.finditer(text) if not block["info"].strip()]
    paths: list[str] = []
    parents: list[str] = []
    for line in tree.splitlines():
        entry = re.search(r"[├└]── ", line)
        depth = line.index(entry[0]) // 4 + 1 if entry else 0
        name = line[entry.end() if entry else 0 :].split()[0]
        parents = [*parents[:depth], name.rstrip("/")]
        paths.append("/".join(parents))
    return paths


def looks_like_path(token: str) -> bool:
    if token.startswith("/") or any(char in token for char in " <([=\"'"):
        return False
    return "/" in token or token.endswith(FILE_SUFFIXES)


def named_paths(text: str) -> list[str]:
    prose = FENCE.sub("", text)
    tokens = CODE_SPAN.findall(prose) + LINK.findall(prose)
    return [token for token in tokens if looks_like_path(token)] + tree_paths(text)


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_path_it_names_exists(combination: str, rendered: Renders) -> None:
    project = rendered[combination]
    text = agents_md(project)
    prose_lines = FENCE.sub("", text).splitlines()
    assert all(line.count("`") % 2 == 0 for line in prose_lines), "a code span spans lines"

    paths = named_paths(text)
    missing = [
        path
        for path in paths
        if not (project.path / path).exists()
        and not (NEW_RESOURCE in path and (project.path / path).parent.is_dir())
    ]

    assert len(paths) > 30
    assert missing == []


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_it_states_the_chosen_options(combination: str, rendered: Renders) -> None:
    project = rendered[combination]
    text = agents_md(project)
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|", text, re.MULTILINE))
    answers = project.answers

    assert rows["User ids"] == f"`{answers['user_id_type']}`"
    assert rows["Auth strategy"] == f"`{answers['auth_strategy']}`"
    assert rows["Auth transport"] == f"`{answers['auth_transport']}`"
    assert rows["E-mail"] == f"`{answers['email_backend']}`"
    assert rows["Social login"] == (", ".join(answers["oauth_providers"]) or "none")
    assert rows["Example resource"] == ("yes" if answers["example_resource"] else "no")
    assert rows["Deployment"] == f"`{answers['deploy']}`"
    assert ("deploy/kubernetes/" in text) == (answers["deploy"] == "kubernetes")
    assert ("app/db/models/post.py" in text) == answers["example_resource"]
    assert ("access_token.py" in text) == (answers["auth_strategy"] == "database")
    assert ("app/core/oauth.py" in text) == bool(answers["oauth_providers"])


def copy_of(project: Project, folder: Path) -> Project:
    """The render, without its virtualenv and caches: commands may change the copy."""
    ignored = shutil.ignore_patterns(".venv", ".data", "*_cache", "__pycache__")
    shutil.copytree(project.path, folder / "project", ignore=ignored)
    return Project(folder / "project", project.answers)


def serves(project: Project, command: str, env: dict[str, str], log: Path) -> str:
    """Start `command`, wait for /api/health/live, stop it; what it logged."""
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=project.path,
            env=project_env(**env, HOST="127.0.0.1", PORT=str(port)),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, f"`{command}` exited:\n{log.read_text()}"
            with contextlib.suppress(URLError, ConnectionError, TimeoutError):
                url = f"http://127.0.0.1:{port}/api/health/live"
                with urlopen(url, timeout=5) as response:
                    assert response.status == 200
                    break
            time.sleep(0.5)
        else:
            pytest.fail(f"`{command}` did not serve /api/health/live:\n{log.read_text()}")
    finally:
        # Ctrl+C, as in a terminal (the server finishes its log lines); then no mercy.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return log.read_text()


@pytest.mark.parametrize("combination", COMMAND_COMBINATIONS)
def test_every_command_it_lists_runs(
    combination: str, rendered: Renders, databases: Databases, scratch: Path
) -> None:
    project = copy_of(rendered[combination], scratch)
    text = agents_md(project)
    env = {
        "DATABASE_URL": databases.url,
        "TEST_DATABASE_URL": databases.test_url,
        "SUPERUSER_PASSWORD": "an admin passphrase 42",
    }
    listed, served = commands(text, "bash"), commands(text, "bash serve")
    assert len(listed) >= 15
    assert [command.split()[0] for command in served] == ["./start.sh", "uv"]

    for command in listed:
        project.run("bash", "-c", command, env=env)
    for number, command in enumerate(served):
        output = serves(project, command, env, scratch / f"serve-{number}.log")
        # Served with the project's logging: one access line, with the request id.
        assert re.search(r"\[[0-9a-f]{32}\] app\.access: \"GET /api/health/live\" 200", output)
