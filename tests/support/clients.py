"""HTTP clients of a served render: a user registered and logged in, no request left to hang."""

import secrets

import httpx

from tests.support.service import Service

PASSWORD = "correct-Horse-battery-9"  # noqa: S105 (the test users' password)
# Longer than any wait the serving tests configure: a request still open after this is a hang.
CLIENT_TIMEOUT_SECONDS = 15.0


def client(service: Service) -> httpx.Client:
    return httpx.Client(base_url=service.base_url, timeout=CLIENT_TIMEOUT_SECONDS)


def register_and_log_in(http: httpx.Client) -> dict[str, str]:
    email = f"user-{secrets.token_hex(6)}@example.com"
    response = http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return log_in(http, email)


def log_in(http: httpx.Client, email: str) -> dict[str, str]:
    response = http.post("/api/auth/login", data={"username": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
