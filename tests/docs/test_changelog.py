"""CHANGELOG.md is the release notes `copier update` users read: one section per release."""

import re
import tomllib

from packaging.version import Version

from tests.support.project import ROOT

CHANGELOG = (ROOT / "CHANGELOG.md").read_text()
SECTIONS = re.split(r"^## ", CHANGELOG, flags=re.MULTILINE)[1:]
RELEASES = {
    section.split("\n", 1)[0]: section
    for section in SECTIONS
    if not section.startswith("Unreleased")
}


def test_releases_are_pep_440_versions_newest_first() -> None:
    versions = [Version(name) for name in RELEASES]

    assert [str(version) for version in versions] == list(RELEASES)  # as tagged: no "v", normalized
    assert versions == sorted(versions, reverse=True)
    assert versions


def test_every_release_says_what_updating_to_it_takes() -> None:
    assert [name for name, notes in RELEASES.items() if "**Updating:**" not in notes] == []


def test_newest_release_is_the_templates_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    assert next(iter(RELEASES)) == project["version"]
