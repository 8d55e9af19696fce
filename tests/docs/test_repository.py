"""The template repository's own Python is held to the standard of what it generates."""

import re
import subprocess
import sys
from pathlib import Path

from tests.support.project import ROOT

RUFF = str(Path(sys.executable).parent / "ruff")


def test_ruff_check_is_clean() -> None:
    result = subprocess.run([RUFF, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_ruff_format_is_clean() -> None:
    result = subprocess.run(
        [RUFF, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_ci_installs_the_uv_the_dockerfile_pins() -> None:
    ci = re.search(r"^uv_version=(\S+)$", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    dockerfile = ROOT / "template" / "{% if docker %}Dockerfile{% endif %}.jinja"
    image = re.search(r"ghcr\.io/astral-sh/uv:(\S+) ", dockerfile.read_text())
    assert ci, ".ci/run pins no uv_version"
    assert image, "the Dockerfile copies uv from no pinned image"
    assert ci[1] == image[1]
