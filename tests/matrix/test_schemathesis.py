"""Schemathesis against a rendered service: the API does what its OpenAPI document says.

A real uvicorn process serves the render on a fresh, migrated database. For a
normal user and a superuser, Schemathesis (deterministic, bounded) calls every
operation of the served `/openapi.json` with valid and invalid input and checks
each answer: never a 5xx, every status code documented, the documented content
type and body schema. The other direction, every documented status code real:
each one must be observed, in the fuzzing or in a targeted request for those
that fuzzing cannot reach (a body too large or not JSON, no login, the links
that mails carry, a database behind the code).
"""

import contextlib
import json
import os
import quopri
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests.support.databases import fresh_databases
from tests.support.ports import free_port
from tests.support.project import Project, Renders, project_env
from tests.support.service import serve as serve_uvicorn

COMBINATIONS = (
    "defaults",
    "uuid-database-cookie-bare",
    "both-database-cookie",
    "both-uuid-jwt-bearer-bare",
)
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
MAX_EXAMPLES = 10
# Operations that may end the caller's login, fuzzed after every other operation:
# a superuser deleting, deactivating or ending the logins of their own account,
# anyone changing their password, ending one of their logins, logging out.
LOGIN_ENDING = (
    "PATCH /api/users/me",
    "PATCH /api/users/{id}",
    "DELETE /api/users/{id}",
    "DELETE /api/users/{user_id}/logins",
    "DELETE /api/users/me/logins/{login_id}",
    "POST /api/auth/logout",
    "POST /api/auth/logout-all",
)
MAIL_TIMEOUT_SECONDS = 60
# More than the rendered default of LOGIN_FAILURES_PER_EMAIL.
LOGIN_ATTEMPTS = 20
USER, SUPERUSER, OTHER = "user@example.com", "root@example.com", "other@example.com"
PASSWORD = "correct-Horse-battery-9"  # noqa: S105 (made-up accounts)
# The rendered default of MAX_REQUEST_BODY_BYTES, plus one.
TOO_LARGE = b"x" * (1_048_576 + 1)
NOT_UTF8 = b'{"\xff": "\xfe"}'
READY = ("/api/health", "/api/health/ready")
# Statuses that the served app cannot give here, each proven by the rendered
# tests/test_oauth.py instead. Served with every provider configured, OAuth routes cannot
# answer their 503 "not configured" (test_is_503_until_configured); and a callback succeeds
# (200, or 204 with the cookie transport) only with a code the provider accepts, which
# needs the provider, mocked there (test_creates_the_user_and_logs_in).
UNOBSERVABLE = {
    **{f"/api/auth/{provider}/authorize": {"503"} for provider in ("google", "github")},
    **{
        f"/api/auth/{provider}/callback": {"503", "200", "204"} for provider in ("google", "github")
    },
}

# (METHOD, path template) -> status codes, as strings like the OpenAPI document's keys.
Statuses = dict[tuple[str, str], set[str]]


@dataclass
class Service:
    """The served render, its OpenAPI document and the statuses it was seen to answer."""

    base: str
    database_url: str
    schema: dict[str, Any]
    folder: Path
    mail: list[Path]
    observed: Statuses = field(default_factory=lambda: defaultdict(set))
    # Answers of the targeted requests that their operation does not document.
    undocumented: list[str] = field(default_factory=list)

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for path, operations in self.schema["paths"].items():
            for method, operation in operations.items():
                yield method.upper(), path, operation

    def documented(self) -> Statuses:
        return {
            (method, path): set(operation["responses"])
            for method, path, operation in self.operations()
        }

    def observe(self, method: str, url: str, status: int) -> tuple[str, str] | None:
        """Tally `status` for the operation that a request to `url` called; that operation.

        Schemathesis also probes undocumented methods (TRACE): those are not tallied.
        """
        path = urlsplit(url).path
        for candidate_method, template, operation in self.operations():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            if candidate_method == method and re.fullmatch(pattern, path):
                self.observed[method, template].add(str(status))
                if str(status) not in operation["responses"]:
                    self.undocumented.append(f"{status} from {method} {url}")
                return method, template
        return None

    def client(self, headers: dict[str, str] | None = None) -> httpx.Client:
        """A client whose every answer is tallied."""

        def tally(response: httpx.Response) -> None:
            self.observe(response.request.method, str(response.request.url), response.status_code)

        return httpx.Client(
            base_url=self.base, headers=headers, event_hooks={"response": [tally]}, timeout=30
        )

    def mailed_token(self, link: str) -> str:
        """The token of the last `link` (verify, reset-password) mailed so far."""
        deadline = time.monotonic() + MAIL_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            # Mail bodies are quoted-printable: long lines are wrapped.
            text = b"".join(quopri.decodestring(path.read_bytes()) for path in self.mail)
            tokens = re.findall(rf"/{link}\?token=([\w.-]+)".encode(), text)
            if tokens:
                return str(tokens[-1].decode())
            time.sleep(0.2)
        raise AssertionError(f"no {link} link was mailed")


@contextlib.contextmanager
def background(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[None]:
    """`command` running in a process group of its own, killed with all of it at the end."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        time.sleep(0.1)
        assert process.poll() is None, f"`{' '.join(command)}` exited:\n{log.read_text()}"
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def serve(project: Project, database_url: str, folder: Path) -> Iterator[Service]:
    """The render under uvicorn on a free loopback port, with a worker that sends its mail,
    caught in a log.
    """
    mail_port = free_port()
    env = {
        # Plain http, so the auth cookie must not be Secure: development.
        "ENVIRONMENT": "development",
        "DATABASE_URL": database_url,
        # The console e-mail backend logs the mails at INFO.
        "LOG_LEVEL": "INFO",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(mail_port),
        "MAIL_STARTTLS": "false",
    }
    for provider in project.answers["oauth_providers"]:
        env[f"{provider.upper()}_CLIENT_ID"] = f"schemathesis-{provider}"
        env[f"{provider.upper()}_CLIENT_SECRET"] = secrets.token_hex(16)
    if project.answers["oauth_providers"]:
        # The providers' token endpoints are a third party: every call to them goes to a
        # proxy port nobody listens on, so a callback meets an unreachable provider.
        env["HTTPS_PROXY"] = env["HTTP_PROXY"] = f"http://127.0.0.1:{free_port()}"
        env["NO_PROXY"] = "127.0.0.1,localhost"
    with contextlib.ExitStack() as stack:
        # The worker sends the mail (the console backend logs it there).
        mail = [folder / "worker.log"]
        worker = ["uv", "run", "--locked", "python", "-m", "commands.worker"]
        stack.enter_context(background(worker, project.path, project_env(**env), mail[0]))
        if project.answers["email_backend"] == "smtp":
            mail.append(folder / "smtp.log")
            smtp = ["uv", "run", "--locked", "python", "-m", "aiosmtpd", "-n"]
            smtp += ["-c", "aiosmtpd.handlers.Debugging", "-l", f"127.0.0.1:{mail_port}"]
            smtp_env = project_env(**env, PYTHONUNBUFFERED="1")  # each mail in the log at once
            stack.enter_context(background(smtp, project.path, smtp_env, mail[-1]))
        served = stack.enter_context(serve_uvicorn(project, env, folder / "uvicorn.log"))
        schema = httpx.get(f"{served.base_url}/openapi.json").json()
        yield Service(served.base_url, database_url, schema, folder, mail)


def log_in(service: Service, email: str) -> dict[str, str]:
    """The header that authenticates requests as `email`: a bearer token or the auth cookie."""
    with service.client() as client:
        response = client.post("/api/auth/login", data={"username": email, "password": PASSWORD})
    assert response.status_code in {200, 204}, response.text
    if response.status_code == 200:
        return {"Authorization": f"Bearer {response.json()['access_token']}"}
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in response.cookies.items())}


def sign_up(project: Project, service: Service) -> dict[str, dict[str, str]]:
    """A user registered through the API, a superuser through the project's command.

    The user follows the links mailed to verify the address and reset the password.
    """
    with service.client() as client:
        response = client.post("/api/auth/register", json={"email": USER, "password": PASSWORD})
        assert response.status_code == 201, response.text
        token = service.mailed_token("verify")
        assert client.post("/api/auth/verify", json={"token": token}).status_code == 200
        client.post("/api/auth/forgot-password", json={"email": USER})
        reset = {"token": service.mailed_token("reset-password"), "password": PASSWORD}
        assert client.post("/api/auth/reset-password", json=reset).status_code == 200
    command = ("uv", "run", "--locked", "python", "-m", "commands.create_superuser", SUPERUSER)
    env = {"DATABASE_URL": service.database_url, "SUPERUSER_PASSWORD": PASSWORD}
    project.run(*command, env=env)
    return {"user": log_in(service, USER), "superuser": log_in(service, SUPERUSER)}


def run_schemathesis(service: Service, headers: dict[str, str], *selection: str) -> Statuses:
    """Schemathesis on the served schema, its checks failing the test; the statuses it saw."""
    report = service.folder / f"schemathesis-{len(list(service.folder.glob('*.har')))}.har"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{service.base}/openapi.json",
        f"--checks={','.join(CHECKS)}",
        f"--max-examples={MAX_EXAMPLES}",
        "--generation-deterministic",
        "--workers=1",
        "--no-color",
        "--report=har",
        f"--report-har-path={report}",
        *selection,
        *(f"--header={name}: {value}" for name, value in headers.items()),
    ]
    # In the test's folder: Schemathesis and Hypothesis keep caches in the working directory.
    result = subprocess.run(
        command, cwd=service.folder, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    seen: Statuses = defaultdict(set)
    for entry in json.loads(report.read_text())["log"]["entries"]:
        request = entry["request"]
        operation = service.observe(request["method"], request["url"], entry["response"]["status"])
        if operation is not None:
            seen[operation].add(str(entry["response"]["status"]))
    return seen


def make_targeted_requests(service: Service, accounts: dict[str, dict[str, str]]) -> None:
    """Requests for the statuses that fuzzing cannot reach (or not before it ends a login)."""
    with (
        service.client(accounts["superuser"]) as client,
        service.client(accounts["user"]) as user,
        service.client() as anonymous,
    ):
        other = client.post("/api/auth/register", json={"email": OTHER, "password": PASSWORD})
        other_url = f"/api/users/{other.json()['id']}"
        for method, path, operation in service.operations():
            # An account that exists, so that its routes get as far as reading the body.
            url = re.sub(r"\{[^/]+?\}", "1", path.replace("/api/users/{id}", other_url))
            if "401" in operation["responses"]:
                anonymous.request(method, url)
            for media_type in operation.get("requestBody", {}).get("content", {}):
                content_type = {"Content-Type": media_type}
                client.request(method, url, content=TOO_LARGE, headers=content_type)
                client.request(method, url, content=NOT_UTF8, headers=content_type)
                client.request(method, url, content=b"{}", headers={"Content-Type": "text/plain"})
        end_logins_of(service, OTHER, other_url, client)
        # Another user's account: for superusers, changed badly, there, deleted, or not there;
        # forbidden to users.
        client.patch(other_url, json={"email": "not an address"})
        for method in ("GET", "PATCH", "DELETE"):
            body = {} if method == "PATCH" else None
            user.request(method, other_url, json=body)
            client.request(method, other_url, json=body)
            client.request(method, "/api/users/not-an-id", json=body)
        # Failed logins for one e-mail, until the limit answers (10 by default).
        wrong = {"username": "limited@example.com", "password": "wrong password"}
        for _ in range(LOGIN_ATTEMPTS):
            if anonymous.post("/api/auth/login", data=wrong).status_code == 429:
                break
        # A database whose schema is behind the code (none at all): not ready. A
        # revision the code does not know counts as a newer release's, and is ready.
        with psycopg.connect(service.database_url, autocommit=True) as connection:
            revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            assert revision is not None
            connection.execute("DELETE FROM alembic_version")
            try:
                for path in READY:
                    client.get(path)
            finally:
                connection.execute("INSERT INTO alembic_version VALUES (%s)", revision)


def log_in_device(client: httpx.Client, email: str) -> dict[str, str]:
    """Log `client` in as `email`: its cookie jar or its header. The bearer tokens, if any."""
    response = client.post("/api/auth/login", data={"username": email, "password": PASSWORD})
    assert response.status_code in {200, 204}, response.text
    if response.status_code == 204:
        return {}
    client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return {"refresh_token": response.json()["refresh_token"]}


def end_logins_of(service: Service, email: str, url: str, superuser: httpx.Client) -> None:
    """Logins of `email` refreshed, listed and ended: answers that need a live login,
    which fuzzing the operations that end logins reaches only until the first one ends.

    Not the accounts' own logins, which the fuzzing goes on to use.
    """
    with service.client() as phone, service.client() as laptop, service.client() as tablet:
        log_in_device(phone, email)
        refresh = log_in_device(laptop, email)
        # Bearer: the token in the body; cookies: the refresh cookie goes by itself.
        refreshed = laptop.post("/api/auth/refresh", json=refresh or None)
        assert refreshed.status_code in {200, 204}, refreshed.text
        # From another site's page (refused with the cookie transport only).
        laptop.post("/api/auth/refresh", headers={"Origin": "https://evil.example"})
        [laptops, *_] = phone.get("/api/users/me/logins").json()
        for expected in (204, 404):
            ended = phone.delete(f"/api/users/me/logins/{laptops['id']}")
            assert ended.status_code == expected, ended.text
        assert phone.delete("/api/users/me/logins/not-a-login").status_code == 422
        log_in_device(tablet, email)
        assert tablet.post("/api/auth/logout").status_code == 204
        assert phone.post("/api/auth/logout-all").status_code == 204
    assert superuser.delete(f"{url}/logins").status_code == 204
    missing = "2147483647" if url.rsplit("/", 1)[1].isdigit() else str(uuid.UUID(int=1))
    assert superuser.delete(f"/api/users/{missing}/logins").status_code == 404


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_served_api_does_what_its_openapi_document_says(
    combination: str, rendered: Renders, tmp_path: Path
) -> None:
    project = rendered[combination]
    project.run("uv", "sync", "--locked")
    with fresh_databases() as databases:
        migrate = ("uv", "run", "--locked", "alembic", "upgrade", "head")
        project.run(*migrate, env={"DATABASE_URL": databases.url})
        with serve(project, databases.url, tmp_path) as service:
            accounts = sign_up(project, service)
            make_targeted_requests(service, accounts)
            for role, headers in accounts.items():
                exclude = (f"--exclude-name={name}" for name in LOGIN_ENDING)
                seen = run_schemathesis(service, headers, *exclude)
                assert "200" in seen["GET", "/api/users/me"], f"Schemathesis was not the {role}"
            for name in LOGIN_ENDING:
                for headers in accounts.values():
                    run_schemathesis(service, headers, f"--include-name={name}")

    assert service.undocumented == []
    never_answered = {
        f"{method} {path}": sorted(missing)
        for (method, path), statuses in service.documented().items()
        if (missing := statuses - service.observed[method, path] - UNOBSERVABLE.get(path, set()))
    }
    assert never_answered == {}, "documented but never answered:\n" + json.dumps(
        never_answered, indent=2
    )
