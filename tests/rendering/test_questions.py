"""copier.yml refuses bad answers, saying what it expects, before it writes anything."""

from pathlib import Path
from typing import Any

import pytest

from tests.support.project import render

BAD_ANSWERS = [
    ({"project_name": "   "}, "project_name is required"),
    ({"project_slug": "1service"}, "project_slug must be lowercase letters"),
    ({"project_slug": "My_Service"}, "project_slug must be lowercase letters"),
    ({"project_slug": "service-"}, "project_slug must be lowercase letters"),
    ({"project_slug": "two--dashes"}, "project_slug must be lowercase letters"),
    ({"project_name": "123"}, "project_slug must be lowercase letters"),
    ({"author_name": ""}, "author_name is required"),
    ({"author_email": "not-an-email"}, "author_email must be an e-mail address"),
    ({"author_email": "a@b"}, "author_email must be an e-mail address"),
    ({"python_version": "3.11"}, "Invalid choice"),
    ({"user_id_type": "bigint"}, "Invalid choice"),
    ({"auth_strategy": "redis"}, "Invalid choice"),
    ({"auth_transport": "header"}, "Invalid choice"),
    ({"oauth_providers": ["facebook"]}, "Invalid choice"),
    ({"email_backend": "sendgrid"}, "Invalid choice"),
    ({"ci": "gitlab"}, "Invalid choice"),
    ({"deploy": "helm"}, "Invalid choice"),
    ({"deploy": "kubernetes", "docker": False}, "deploy=kubernetes runs the image the Dockerfile"),
]


@pytest.mark.parametrize(("answers", "message"), BAD_ANSWERS, ids=[str(a) for a, _ in BAD_ANSWERS])
def test_bad_answer_is_refused_before_anything_is_written(
    template: Path, tmp_path: Path, answers: dict[str, Any], message: str
) -> None:
    destination = tmp_path / "project"

    with pytest.raises(ValueError, match=message):
        render(template, destination, {"project_name": "Valid Name", **answers})

    assert not destination.exists()


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Billing API", "billing-api"),
        ("  Orders & Payments v2 ", "orders-payments-v2"),
    ],
)
def test_slug_is_derived_from_the_name(
    template: Path, tmp_path: Path, name: str, slug: str
) -> None:
    project = render(template, tmp_path / "project", {"project_name": name})

    assert f'name = "{slug}"' in (project / "pyproject.toml").read_text()
