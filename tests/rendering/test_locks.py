"""Every pre-resolved lock in locks/ still satisfies the pyproject.toml it is rendered with.

The gates install the locks of the matrix' answer sets; this covers every
lock variant, including those no matrix row happens to pick.
"""

from pathlib import Path

import pytest

from locks.relock import variant_name, variants
from tests.support.project import ROOT, Project, render


def test_every_variant_has_a_lock_and_nothing_else_is_there() -> None:
    expected = {f"{variant_name(answers)}.lock" for answers in variants()}

    assert {path.name for path in (ROOT / "locks").glob("*.lock")} == expected


@pytest.mark.parametrize("answers", variants(), ids=variant_name)
def test_lock_is_current(template: Path, tmp_path: Path, answers: dict[str, object]) -> None:
    path = render(template, tmp_path / "project", {"project_name": "Lock Check", **answers})

    Project(path, answers).run("uv", "lock", "--check")
