"""The matrix covers what it claims: every value once, every pair of the auth questions."""

import itertools
from typing import Any

import pytest
import yaml

from tests.support.matrix import COMBINATIONS, PAIRWISE
from tests.support.project import ROOT

QUESTIONS: dict[str, Any] = yaml.safe_load((ROOT / "copier.yml").read_text())


def choices(question: str) -> list[Any]:
    """Every value a question can take; each OAuth provider counts as one."""
    spec = QUESTIONS[question]
    if spec["type"] == "bool":
        return [True, False]
    values = list(
        spec["choices"].values() if isinstance(spec["choices"], dict) else spec["choices"]
    )
    return (
        [[], *[[value] for value in values], sorted(values)] if spec.get("multiselect") else values
    )


def choice_questions() -> list[str]:
    return [
        name
        for name, spec in QUESTIONS.items()
        if not name.startswith("_")
        and spec.get("when", True) is not False
        and (spec["type"] == "bool" or "choices" in spec)
    ]


def normalized(value: Any) -> Any:
    return tuple(sorted(value)) if isinstance(value, list) else value


@pytest.mark.parametrize("question", choice_questions())
def test_every_value_of_every_choice_question_is_rendered(question: str) -> None:
    # Questions asked only for some answers (`when`) are absent from the other sets.
    rendered = {
        normalized(answers[question]) for answers in COMBINATIONS.values() if question in answers
    }

    assert {normalized(value) for value in choices(question)} <= rendered


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(PAIRWISE, 2)))
def test_every_pair_of_auth_values_is_rendered_together(first: str, second: str) -> None:
    rendered = {
        (normalized(answers[first]), normalized(answers[second]))
        for answers in COMBINATIONS.values()
    }
    expected = {(normalized(a), normalized(b)) for a in choices(first) for b in choices(second)}
    assert expected <= rendered


def test_first_combination_is_the_defaults() -> None:
    defaults = {name: QUESTIONS[name]["default"] for name in COMBINATIONS["defaults"]}
    defaults["oauth_providers"] = yaml.safe_load(defaults["oauth_providers"])
    assert COMBINATIONS["defaults"] == defaults


def test_the_template_repository_ci_runs_every_combination() -> None:
    workflow = yaml.safe_load((ROOT / ".github/workflows/matrix.yml").read_text())
    assert workflow["jobs"]["render"]["strategy"]["matrix"]["combination"] == list(COMBINATIONS)
