"""Operation ids: the names of the functions of clients generated from openapi.json."""

import re
from collections import Counter
from types import SimpleNamespace

import pytest
from fastapi import FastAPI

from app.api.operation_ids import MAX_LENGTH, operation_id
from app.main import app


def test_every_operation_id_is_a_short_unique_name() -> None:
    ids = [
        operation["operationId"]
        for operations in app.openapi()["paths"].values()
        for operation in operations.values()
    ]

    assert ids
    assert [name for name, count in Counter(ids).items() if count > 1] == []
    assert [name for name in ids if not re.fullmatch(r"[a-z][a-z0-9-]*", name)] == []
    assert [name for name in ids if len(name) > MAX_LENGTH] == []


@pytest.mark.parametrize(
    ("name", "method", "path", "expected"),
    [
        ("logout_all", "POST", "/api/auth/logout-all", "logout-all"),
        ("auth:jwt.login", "POST", "/api/auth/login", "login"),
        ("auth:database.logout", "POST", "/api/auth/logout", "logout"),
        ("reset:forgot_password", "POST", "/api/auth/forgot-password", "forgot-password"),
        ("verify:request-token", "POST", "/api/auth/request-verify-token", "request-verify-token"),
        ("users:current_user", "GET", "/api/users/me", "read-me"),
        ("users:delete_user", "DELETE", "/api/users/{id}", "delete-user"),
        ("oauth:github.database.callback", "GET", "/api/auth/github/callback", "github-callback"),
    ],
)
def test_names_of_routes_and_of_fastapi_users_routes_read_as_names(
    name: str, method: str, path: str, expected: str
) -> None:
    route = SimpleNamespace(name=name, methods={method}, path=path)

    assert operation_id(route) == expected


def test_two_routes_that_would_share_an_id_stop_the_app() -> None:
    twins = FastAPI(generate_unique_id_function=operation_id)
    twins.get("/twin/one", name="read_twin")(lambda: None)

    with pytest.raises(ValueError, match="would share the operation id 'read-twin'"):
        twins.get("/twin/two", name="read_twin")(lambda: None)


@pytest.mark.parametrize("name", ["ReadTwin", "read_" + "twin_" * 8])
def test_a_name_that_makes_no_short_lowercase_id_stops_the_app(name: str) -> None:
    with pytest.raises(ValueError, match="lowercase words joined by '-', at most 40"):
        FastAPI(generate_unique_id_function=operation_id).get("/twin", name=name)(lambda: None)
