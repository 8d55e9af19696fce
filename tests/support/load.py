"""Fifty concurrent clients of a served render, and the ledger of what they got wrong."""

import asyncio
import secrets
from dataclasses import dataclass, field

import httpx

from tests.support.clients import CLIENT_TIMEOUT_SECONDS, PASSWORD

LOAD_CLIENTS = 50
# Of those, the clients that log in over and over: Argon2 costs CPU on purpose.
LOGIN_CLIENTS = 5
LOAD_USERS = 10
LOAD_SECONDS = 4.0


@dataclass
class Ledger:
    """What the clients did: their unexpected answers, the posts that must still exist."""

    errors: list[str] = field(default_factory=list)
    kept: dict[int, tuple[dict[str, str], str]] = field(default_factory=dict)
    deleted: list[tuple[dict[str, str], int]] = field(default_factory=list)

    def check(self, response: httpx.Response, expected: int) -> bool:
        if response.status_code != expected:
            request = response.request
            self.errors.append(f"{request.method} {request.url.path}: {response.status_code}")
        return response.status_code == expected


async def register(http: httpx.AsyncClient) -> str:
    email = f"load-{secrets.token_hex(6)}@example.com"
    response = await http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return email


async def log_in_async(http: httpx.AsyncClient, email: str, ledger: Ledger) -> dict[str, str]:
    login = await http.post("/api/auth/login", data={"username": email, "password": PASSWORD})
    ledger.check(login, 200)
    return {"Authorization": f"Bearer {login.json().get('access_token')}"}


async def login_client(http: httpx.AsyncClient, email: str, until: float, ledger: Ledger) -> None:
    """Log in and read the profile, over and over."""
    while asyncio.get_running_loop().time() < until:
        headers = await log_in_async(http, email, ledger)
        ledger.check(await http.get("/api/users/me", headers=headers), 200)


async def posts_client(
    http: httpx.AsyncClient, headers: dict[str, str], until: float, ledger: Ledger
) -> None:
    """Create, read and change posts, deleting every third, over and over."""
    round_ = 0
    while asyncio.get_running_loop().time() < until:
        round_ += 1
        ledger.check(await http.get("/api/users/me", headers=headers), 200)
        created = await http.post(
            "/api/posts/", json={"title": f"Post {round_}", "body": "load"}, headers=headers
        )
        if not ledger.check(created, 201):
            continue
        post = f"/api/posts/{created.json()['id']}"
        ledger.check(await http.get(post, headers=headers), 200)
        title = f"Post {round_}, changed"
        ledger.check(await http.patch(post, json={"title": title}, headers=headers), 200)
        if round_ % 3 == 0:
            if ledger.check(await http.delete(post, headers=headers), 204):
                ledger.deleted.append((headers, created.json()["id"]))
        else:
            ledger.kept[created.json()["id"]] = (headers, title)


async def run_load(base_url: str) -> Ledger:
    ledger = Ledger()
    limits = httpx.Limits(max_connections=LOAD_CLIENTS)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits
    ) as http:
        emails = await asyncio.gather(*(register(http) for _ in range(LOAD_USERS)))
        tokens = await asyncio.gather(*(log_in_async(http, email, ledger) for email in emails))
        until = asyncio.get_running_loop().time() + LOAD_SECONDS
        await asyncio.gather(
            *(login_client(http, emails[number], until, ledger) for number in range(LOGIN_CLIENTS)),
            *(
                posts_client(http, tokens[number % LOAD_USERS], until, ledger)
                for number in range(LOAD_CLIENTS - LOGIN_CLIENTS)
            ),
        )
        # Every write the service confirmed is there, and every delete is.
        for post_id, (headers, title) in ledger.kept.items():
            response = await http.get(f"/api/posts/{post_id}", headers=headers)
            if ledger.check(response, 200) and response.json()["title"] != title:
                ledger.errors.append(f"post {post_id} lost its change")
        for headers, post_id in ledger.deleted:
            ledger.check(await http.get(f"/api/posts/{post_id}", headers=headers), 404)
    return ledger
