"""Resolve the rendered projects' uv.lock files again.

Every rendered project ships a `uv.lock`, so that `uv sync --locked` works the
moment it is generated. The lock depends on the answers that change the
dependency set (Python version, OAuth, e-mail backend): this script renders
one project per combination of those, runs `uv lock` in it, and stores the
result here as `<variant>.lock`, with the project's name left as a Jinja
placeholder. `template/uv.lock.jinja` includes the one that matches.

Run it after changing dependencies in `template/pyproject.toml.jinja`:

    uv run python -m locks.relock            # re-resolve every variant, keeping versions
    uv run python -m locks.relock --upgrade  # and take the newest releases
"""

import argparse
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

from copier import run_copy

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER_SLUG = "lock-placeholder"
PYTHON_VERSIONS = ("3.12", "3.13")
EMAIL_BACKENDS = ("smtp", "console")


def variants() -> list[dict[str, object]]:
    return [
        {"python_version": python, "oauth_providers": oauth, "email_backend": backend}
        for python, oauth, backend in itertools.product(
            PYTHON_VERSIONS, ([], ["google"]), EMAIL_BACKENDS
        )
    ]


def variant_name(answers: dict[str, object]) -> str:
    """Must agree with `lock_variant` in copier.yml."""
    oauth = "-oauth" if answers["oauth_providers"] else ""
    return f"py{answers['python_version']}{oauth}-{answers['email_backend']}"


def relock(answers: dict[str, object], upgrade: bool, root: Path = ROOT) -> Path:
    """Lock the variant of `answers` again in the template at `root` (this one by default)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / PLACEHOLDER_SLUG
        run_copy(
            str(root),
            project,
            data={"project_name": PLACEHOLDER_SLUG, **answers},
            defaults=True,
            vcs_ref="HEAD",  # the working tree, uncommitted changes included
            exclude=["uv.lock"],
            quiet=True,
        )
        previous = root / "locks" / f"{variant_name(answers)}.lock"
        if previous.exists() and not upgrade:
            # Keep every version that still satisfies the requirements.
            (project / "uv.lock").write_text(to_rendered(previous.read_text()))
        command = ["uv", "lock", *(["--upgrade"] if upgrade else [])]
        subprocess.run(command, cwd=project, check=True)
        previous.write_text(to_template((project / "uv.lock").read_text()))
        return previous


def to_template(lock: str) -> str:
    placeholder = f'name = "{PLACEHOLDER_SLUG}"'
    if lock.count(placeholder) != 1:
        raise SystemExit(f"expected the project's name exactly once in the lock: {placeholder}")
    return lock.replace(placeholder, 'name = "{{ project_slug }}"')


def to_rendered(template: str) -> str:
    return template.replace('name = "{{ project_slug }}"', f'name = "{PLACEHOLDER_SLUG}"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="take the newest releases")
    args = parser.parse_args()
    for answers in variants():
        print(f"locked {relock(answers, args.upgrade).relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
