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
from tests.support.project import Project, project_env
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


def parent_of(pid: int) -> int:
    # /proc/<pid>/stat: "pid (name) state ppid ...", the name in parentheses.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[1])


PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds")


def test_two_workers_served_as_in_production_count_every_request(
    project: Project, tmp_path: Path
) -> None:
    """`python -m commands.serve` with WEB_CONCURRENCY=2 and no PROMETHEUS_MULTIPROC_DIR:
    it makes its own folder under TMPDIR, each scrape counts every request whichever
    worker answered it, shows each worker's process metrics, and the folder goes at exit.
    """
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = production(
        NO_DATABASE, METRICS_TOKEN=METRICS_TOKEN, WEB_CONCURRENCY="2", TMPDIR=str(temporary)
    )
    # A path no route has and nothing else asks for: its count is exactly what was sent.
    unmatched = frozenset({"method": "GET", "route": "<unmatched>", "status": "4xx"}.items())
    with serve(project, env, tmp_path / "serve.log", production=True) as service:
        [folder] = temporary.glob("prometheus-*")
        # New connections land on either worker: send until both have counted one.
        sent = 0
        while len(list(folder.glob("counter_*.db"))) < 2 and sent < 2000:
            assert httpx.get(f"{service.base_url}/no-such-page").status_code == 404
            sent += 1
        counters = list(folder.glob("counter_*.db"))
        assert len(counters) == 2, service.output()
        workers = {int(path.stem.rpartition("_")[2]) for path in counters}
        assert {parent_of(pid) for pid in workers} == {service.process.pid}
        for _ in range(50):
            assert httpx.get(f"{service.base_url}/no-such-page").status_code == 404
        sent += 50
        counted = ("http_requests_total", unmatched)
        settled(project, service.base_url, counted)
        scrapes = [scrape(project, service.base_url) for _ in range(4)]

    assert not folder.exists(), "the multiprocess folder outlived the service"
    assert {series[counted] for series in scrapes} == {sent}
    for series in scrapes:
        for name in PROCESS_METRICS:
            reported = {
                dict(labels)["pid"]: value
                for (metric, labels), value in series.items()
                if metric == name
            }
            assert set(reported) == {str(pid) for pid in workers}, (name, reported)
            assert all(value > 0 for value in reported.values()), (name, reported)
    logged = [line for line in service.output().splitlines() if line.strip()]
    # Every line JSON, the supervisor's included.
    messages = {json.loads(line)["message"].split(" [")[0] for line in logged}
    assert {"Started parent process", "Stopping parent process"} <= messages, messages


def test_a_multiprocess_folder_that_does_not_exist_is_one_settings_error(
    project: Project, tmp_path: Path
) -> None:
    missing = tmp_path / "never-made"
    env = production(NO_DATABASE, WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(missing))
    result = subprocess.run(
        [str(project.path / ".venv" / "bin" / "python"), "-m", "commands.serve"],
        cwd=project.path,
        env=project_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [problem] = [line for line in result.stderr.splitlines() if str(missing) in line]
    assert problem.strip().startswith("PROMETHEUS_MULTIPROC_DIR:"), result.stderr


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
        # uvicorn logs the traceback after the 500 has gone out: wait for both.
        deadline = time.monotonic() + RECEIVE_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not (
            receiver.requests and '"ERROR"' in service.output()
        ):
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
