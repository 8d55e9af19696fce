"""Metrics, traces and error reports of the default render, served by a real uvicorn.

The rendered suite proves what one process reports; these prove what only a
real server shows: two worker processes adding up in one scrape, spans leaving
the process for an OTLP endpoint, and a 500's log lines and error report (local
HTTP receivers stand in for a collector and for Sentry: the tests assert what
was sent to them).
"""

import gzip
import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from bench.sink import OtlpSink, otlp_sink
from tests.support.databases import Databases
from tests.support.project import Project
from tests.support.service import new_secret_keys, serve

POOL_SIZE = 7
METRICS_TOKEN = secrets.token_urlsafe(32)
RECEIVE_TIMEOUT_SECONDS = 30.0


def production(database_url: str, **settings: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "production",
        "DATABASE_URL": database_url,
        "DATABASE_POOL_SIZE": str(POOL_SIZE),
        **new_secret_keys(),
        # Required in production; a closed port: e-mails fail at once.
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "9",
        **settings,
    }


# Never connected to: these tests' requests need no database.
NO_DATABASE = "postgresql://nobody@127.0.0.1:9/none"


# Run in the project's venv, which has prometheus-client: its parser's samples as JSON.
PARSE_METRICS = """
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = text_string_to_metric_families(sys.stdin.read())
print(json.dumps([[s.name, s.labels, s.value] for f in families for s in f.samples]))
"""

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def in_project_python(project: Project, program: str, stdin: bytes) -> bytes:
    return subprocess.run(
        [str(project.path / ".venv" / "bin" / "python"), "-c", program],
        input=stdin,
        capture_output=True,
        check=True,
    ).stdout


def scrape(project: Project, base_url: str) -> Series:
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    # A new connection per scrape: any worker may answer it.
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    samples = json.loads(in_project_python(project, PARSE_METRICS, response.content))
    return {(name, frozenset(labels.items())): value for name, labels, value in samples}


def settled(project: Project, base_url: str, key: tuple[str, frozenset[tuple[str, str]]]) -> Series:
    """A scrape once `key` holds still across two in a row.

    A request is counted as it ends, just after its response has gone out: the
    scrape that follows may come before the last count, on the other worker.
    """
    previous = None
    for _ in range(50):
        series = scrape(project, base_url)
        if key in series and series[key] == previous:
            return series
        previous = series.get(key)
        time.sleep(0.1)
    raise AssertionError(f"{key} did not settle: last {previous}")


def test_two_workers_report_one_sum(project: Project, tmp_path: Path) -> None:
    multiprocess_dir = tmp_path / "prometheus"
    multiprocess_dir.mkdir()
    env = production(
        NO_DATABASE, METRICS_TOKEN=METRICS_TOKEN, PROMETHEUS_MULTIPROC_DIR=str(multiprocess_dir)
    )
    live = frozenset({"method": "GET", "route": "/api/health/live", "status": "2xx"}.items())
    with serve(project, env, tmp_path / "uvicorn.log", args=["--workers", "2"]) as service:
        # Each worker starts with one request of its own (the readiness poll
        # reaches one); new connections land on either, until both have counted.
        sent = 0
        while len(list(multiprocess_dir.glob("counter_*.db"))) < 2 and sent < 2000:
            assert httpx.get(f"{service.base_url}/api/health/live").status_code == 200
            sent += 1
        assert len(list(multiprocess_dir.glob("counter_*.db"))) == 2, service.output()
        counted = ("http_requests_total", live)
        before = settled(project, service.base_url, counted)[counted]
        for _ in range(50):
            assert httpx.get(f"{service.base_url}/api/health/live").status_code == 200
        settled(project, service.base_url, counted)
        scrapes = [scrape(project, service.base_url) for _ in range(4)]

    # Each worker sets its pool's size: the scrape of either shows the sum.
    assert {series[("db_pool_size", frozenset())] for series in scrapes} == {2 * POOL_SIZE}
    assert {series[("http_requests_total", live)] for series in scrapes} == {before + 50}


def test_production_serves_metrics_to_the_token_only(project: Project, tmp_path: Path) -> None:
    with serve(project, production(NO_DATABASE), tmp_path / "closed.log") as service:
        assert httpx.get(f"{service.base_url}/metrics").status_code == 404
    env = production(NO_DATABASE, METRICS_TOKEN=METRICS_TOKEN)
    with serve(project, env, tmp_path / "token.log") as service:
        assert httpx.get(f"{service.base_url}/metrics").status_code == 401
        assert "http_requests_total" in str(scrape(project, service.base_url))


@pytest.fixture
def receiver() -> Iterator[OtlpSink]:
    """Stands in for an OpenTelemetry collector: keeps each request's path and body."""
    with otlp_sink(keep=True) as sink:
        yield sink


# Run in the project's venv, which has OpenTelemetry's protobuf classes: the
# spans of an ExportTraceServiceRequest read from stdin, as JSON.
DECODE = """
import sys
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
request = ExportTraceServiceRequest()
request.ParseFromString(sys.stdin.buffer.read())
print(MessageToJson(request))
"""


def decoded(project: Project, body: bytes) -> dict[str, object]:
    result: dict[str, object] = json.loads(in_project_python(project, DECODE, body))
    return result


def test_spans_are_exported_to_the_otlp_endpoint(
    project: Project, databases: Databases, receiver: OtlpSink, tmp_path: Path
) -> None:
    env = production(
        databases.url,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_SERVICE_NAME="observed-demo",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=env)
    with serve(project, env, tmp_path / "uvicorn.log") as service:
        # Health checks make no trace: neither serve()'s polls of /api/health/live nor this.
        assert httpx.get(f"{service.base_url}/api/health/ready", timeout=10).status_code == 200
        response = httpx.post(
            f"{service.base_url}/api/auth/login",
            data={"username": "nobody@example.com", "password": "not-a-password"},
            timeout=10,
        )
        assert response.status_code == 400, response.text
        deadline = time.monotonic() + RECEIVE_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not any(
            b"/api/auth/login" in body for _, _, body in receiver.requests
        ):
            time.sleep(0.1)

    paths = {(path, content_type) for path, content_type, _ in receiver.requests}
    assert paths == {("/v1/traces", "application/x-protobuf")}
    spans = []
    for _, _, body in receiver.requests:
        for resource_spans in decoded(project, body)["resourceSpans"]:  # type: ignore[attr-defined]
            attributes = {
                item["key"]: item["value"].get("stringValue")
                for item in resource_spans["resource"]["attributes"]
            }
            assert attributes["service.name"] == "observed-demo"
            for scope_spans in resource_spans["scopeSpans"]:
                spans.extend(scope_spans["spans"])
    assert not [span["name"] for span in spans if "health" in span["name"]]
    [request] = [span for span in spans if span["name"] == "POST /api/auth/login"]
    children = [span for span in spans if span.get("parentSpanId") == request["spanId"]]
    statements = [
        span
        for span in children
        if any(item["key"] == "db.query.text" for item in span.get("attributes", []))
    ]
    assert statements, [span["name"] for span in spans]
    assert all(span["traceId"] == request["traceId"] for span in children)


def test_a_refused_row_leaves_no_data_in_the_log_or_the_error_report(
    project: Project, databases: Databases, receiver: OtlpSink, tmp_path: Path
) -> None:
    """Production, as its README sets it up: JSON logs, Sentry; PostgreSQL refuses a
    registration's row (a CHECK constraint), and the row holds an e-mail and a hash.
    """
    port = receiver.server_address[1]
    env = production(databases.url, SENTRY_DSN=f"http://public-key@127.0.0.1:{port}/1")
    project.run("uv", "run", "--locked", "alembic", "upgrade", "head", env=env)
    with psycopg.connect(databases.url.replace("+asyncpg", ""), autocommit=True) as connection:
        connection.execute("ALTER TABLE users ADD CONSTRAINT refuse_all CHECK (email = '')")
    email, password = "refused.newcomer@example.com", "a password refused with its row"
    with serve(project, env, tmp_path / "uvicorn.log") as service:
        response = httpx.post(
            f"{service.base_url}/api/auth/register",
            json={"email": email, "password": password},
            timeout=10,
        )
        assert response.status_code == 500
        deadline = time.monotonic() + RECEIVE_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not receiver.requests:
            time.sleep(0.1)
        log = service.output()

    request_id = response.headers["X-Request-ID"]
    [error] = [json.loads(line) for line in log.splitlines() if '"ERROR"' in line]
    assert error["request_id"] == request_id
    assert "CheckViolationError, SQLSTATE 23514, constraint refuse_all" in error["exception"]
    reports = b"".join(
        gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
        for _, _, body in receiver.requests
    ).decode()
    assert f'"request_id":"{request_id}"' in reports.replace(" ", "")
    assert "SQLSTATE 23514" in reports
    for data in (email, password, "$argon2id$", "Failing row contains", "[parameters:"):
        assert data not in log
        assert data not in reports
