"""Passwords are stored as Argon2 hashes, and never appear in logs, errors or responses."""

import logging
import re

import pytest
from argon2 import DEFAULT_MEMORY_COST, DEFAULT_PARALLELISM, DEFAULT_TIME_COST
from httpx import AsyncClient, Response

from app.core.security import password_helper
from tests.clients import LOGIN_URL, log_in
from tests.outbox import Outbox

# Every password below contains this marker, which nothing else in the service says.
MARKER = "Tr0ub4dor&3"
FIRST, WRONG, SECOND, THIRD = (f"{MARKER} {word} horse" for word in ("one", "bad", "two", "three"))


async def test_the_service_hashes_with_argon2id_at_production_cost() -> None:
    """The one test that pays for production Argon2: every other test uses a cheap one.

    create_superuser hashes with this same helper (test_create_superuser.py).
    """
    hashed = await password_helper.hash_async(FIRST)

    production = f"m={DEFAULT_MEMORY_COST},t={DEFAULT_TIME_COST},p={DEFAULT_PARALLELISM}"
    assert hashed.startswith(f"$argon2id$v=19${production}$")
    assert MARKER not in hashed
    assert await password_helper.verify_and_update_async(FIRST, hashed) == (True, None)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything logged at DEBUG, SQL statements with their parameters included.

    Requested before the test's database connection opens: SQLAlchemy decides
    then whether that connection logs.
    """
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy sets its own loggers to WARNING unless told otherwise.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    return caplog


async def test_passwords_stay_out_of_logs_errors_and_responses(
    debug_logs: pytest.LogCaptureFixture, client: AsyncClient, outbox: Outbox
) -> None:
    email = "secrecy@example.com"
    responses: list[Response] = []

    async def call(
        method: str, url: str, *, json: object = None, data: dict[str, str] | None = None
    ) -> Response:
        response = await client.request(method, url, json=json, data=data)
        responses.append(response)
        return response

    # Registration, refused and accepted; logins that fail, then one that works.
    await call("POST", "/api/auth/register", json={"password": FIRST})
    await call("POST", "/api/auth/register", json={"email": email, "password": MARKER * 12})
    await call("POST", "/api/auth/register", json={"email": email, "password": FIRST})
    await call("POST", LOGIN_URL, data={"password": FIRST})
    await call("POST", LOGIN_URL, data={"username": email, "password": WRONG})
    await call("POST", LOGIN_URL, data={"username": "nobody@example.com", "password": FIRST})
    await log_in(client, email, FIRST)
    # A password reset, a refused and an accepted change of password.
    await call("POST", "/api/auth/forgot-password", json={"email": email})
    [*_, reset_mail] = await outbox.messages()
    token = re.search(r"token=([\w.-]+)", reset_mail.get_content())
    assert token
    await call("POST", "/api/auth/reset-password", json={"token": token.group(1)})
    await call(
        "POST", "/api/auth/reset-password", json={"token": token.group(1), "password": SECOND}
    )
    # The reset ended every session: a new login, with the new password.
    await log_in(client, email, SECOND)
    await call("PATCH", "/api/users/me", json={"password": f"{email} {MARKER}"})
    await call("PATCH", "/api/users/me", json={"password": THIRD})

    assert [response.status_code for response in responses] == [
        *(422, 400, 201),
        *(422, 400, 400),
        *(202, 422, 200),
        *(400, 200),
    ]
    for response in responses:
        assert MARKER not in response.text, (response.request.url, response.text)
        assert MARKER not in str(response.headers)
    for message in await outbox.messages():
        assert MARKER not in message.as_string()
    # Requests and SQL were logged (the check is not vacuous), without the passwords.
    assert {"httpx", "sqlalchemy.engine.Engine"} <= {record.name for record in debug_logs.records}
    assert MARKER not in debug_logs.text
