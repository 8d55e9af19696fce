"""Traces, caught by OpenTelemetry's in-memory exporter instead of sent with OTLP."""

import contextvars
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv.attributes.db_attributes import DB_QUERY_TEXT, DB_RESPONSE_STATUS_CODE
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.api.request_log import REQUEST_ID_HEADER
from app.core.config import settings
from app.core.logging import configure_logging
from app.db.models.user import User
from app.observability.tracing import current_trace_id, trace_statements, tracer_provider
from tests.clients import log_in
from tests.factories import DEFAULT_PASSWORD

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def exporter(
    app_under_test: FastAPI, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[InMemorySpanExporter]:
    """The app traced, its statements on the test's engine, every span kept here, and
    log lines carrying the trace id.

    The service makes its provider global before the app exists; a test gives
    its own to the app's telemetry settings, and the global one stays unset.
    """
    exporter = InMemorySpanExporter()
    provider = tracer_provider(settings, SimpleSpanProcessor(exporter))
    statements = trace_statements(engine, provider)
    monkeypatch.setitem(app_under_test._telemetry, "tracer_provider", provider)
    configure_logging(settings.LOG_LEVEL, settings.log_format, current_trace_id)
    yield exporter
    configure_logging(settings.LOG_LEVEL, settings.log_format)
    statements.remove()


@pytest.fixture
def in_a_span() -> Iterator[None]:
    """A span current, as a traced request's is: statements outside any make none."""
    with TracerProvider().get_tracer(__name__).start_as_current_span("a traced request"):
        yield


def server_span(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.kind is SpanKind.SERVER and s.name == name]
    return span


async def test_a_request_has_a_span_per_statement_and_no_secret(
    exporter: InMemorySpanExporter, client: AsyncClient, user: User
) -> None:
    token = await log_in(client, user.email, DEFAULT_PASSWORD)
    assert (await client.get("/api/users/me")).status_code == 200

    spans = exporter.get_finished_spans()
    request = server_span(spans, "GET /api/users/me")
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/users/me"
    assert request.attributes["http.response.status_code"] == 200
    statements = [
        span
        for span in spans
        if span.parent is not None
        and span.parent.span_id == request.context.span_id
        and span.attributes
        and DB_QUERY_TEXT in span.attributes
    ]
    assert statements, [span.name for span in spans]
    assert any("FROM users" in str(s.attributes[DB_QUERY_TEXT]) for s in statements)  # type: ignore[index]

    # The login looked the user up by e-mail: a parameter, never in a span.
    secrets = [DEFAULT_PASSWORD, token, user.email]
    for span in spans:
        attributes = dict(span.attributes or {})
        assert not any("param" in key for key in attributes), attributes
        for key, value in attributes.items():
            for secret in secrets:
                assert secret not in str(value), (span.name, key)


@pytest.mark.usefixtures("in_a_span")
async def test_statements_without_parameters_and_with_many_are_traced_too(
    exporter: InMemorySpanExporter, connection: AsyncConnection
) -> None:
    """The dialect runs statements three ways; each has its own event."""
    create = "CREATE TEMPORARY TABLE traced (n integer)"
    await connection.exec_driver_sql(create, execution_options={"no_parameters": True})
    await connection.execute(text("INSERT INTO traced VALUES (:n)"), [{"n": 1}, {"n": 2}])
    assert await connection.scalar(text("SELECT count(*) FROM traced")) == 2

    texts = [
        str((span.attributes or {}).get(DB_QUERY_TEXT)) for span in exporter.get_finished_spans()
    ]
    assert [statement.split()[0] for statement in texts] == ["CREATE", "INSERT", "SELECT"]


@pytest.mark.usefixtures("in_a_span")
async def test_a_failed_statement_names_its_error_and_not_the_values(
    exporter: InMemorySpanExporter, connection: AsyncConnection
) -> None:
    """PostgreSQL quotes the value it refused in its message: the span keeps none of it."""
    value = "not-a-number-but-a-secret"
    statement = text("SELECT CAST(CAST(:value AS text) AS integer)")
    savepoint = await connection.begin_nested()
    with pytest.raises(DBAPIError, match=value):
        await connection.execute(statement, {"value": value})
    await savepoint.rollback()

    [span] = [s for s in exporter.get_finished_spans() if "CAST" in str(s.attributes)]
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes[DB_RESPONSE_STATUS_CODE] == "22P02"  # invalid_text_representation
    assert span.attributes[ERROR_TYPE]
    assert value not in f"{span.attributes} {span.status.description} {span.events}"


@pytest.mark.parametrize(
    "path", ["/metrics", "/api/health", "/api/health/live", "/api/health/ready"]
)
async def test_metrics_and_health_checks_make_no_trace(
    exporter: InMemorySpanExporter, client: AsyncClient, path: str
) -> None:
    """Asked every few seconds: not even their statements start a trace of their own."""
    assert (await client.get(path)).status_code == 200
    assert exporter.get_finished_spans() == ()

    # Any other request is traced, its statements inside its span.
    assert (await client.get("/api/users/me")).status_code == 401
    assert [span.name for span in exporter.get_finished_spans()] == ["GET /api/users/me"]


async def test_a_statement_outside_any_span_makes_none(
    exporter: InMemorySpanExporter, connection: AsyncConnection
) -> None:
    """Start-up's, say: a trace of one statement would tell nothing."""
    assert await connection.scalar(text("SELECT 1")) == 1
    assert exporter.get_finished_spans() == ()


async def test_log_lines_carry_the_request_id_and_the_trace_id(
    exporter: InMemorySpanExporter, client: AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="app.access"):
        response = await client.get("/api/users/me?token=in-the-query")

    span = server_span(exporter.get_finished_spans(), "GET /api/users/me")
    [line] = [r for r in caplog.records if r.name == "app.access"]
    assert line.request_id == response.headers[REQUEST_ID_HEADER]  # type: ignore[attr-defined]
    assert line.trace_id == format(span.context.trace_id, "032x")  # type: ignore[attr-defined]
    assert "in-the-query" not in str(span.attributes)
    assert span.attributes is not None
    assert span.attributes["url.query"] == "token=REDACTED"


def test_an_unconfigured_service_loads_no_tracing_sdk_and_no_sentry(tmp_path: Path) -> None:
    """Off means not even imported: start-up and requests pay nothing for them.

    In a process of its own, without .env: the suite's settings (conftest.py puts
    them in the environment) and none of tracing's or Sentry's.
    """
    unset = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "SENTRY_DSN")
    environment = {name: value for name, value in os.environ.items() if name not in unset}
    environment["PYTHONPATH"] = str(PROJECT_ROOT)
    started = subprocess.run(
        [sys.executable, "-c", "import sys, app.main; print(sorted(sys.modules))"],
        cwd=tmp_path,  # no .env
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )

    assert started.returncode == 0, started.stderr
    loaded = started.stdout
    assert "'app.observability.metrics'" in loaded
    for module in ("opentelemetry.sdk", "app.observability.tracing", "sentry_sdk"):
        assert f"'{module}'" not in loaded


@pytest.fixture
def traced_logging() -> Iterator[None]:
    """Log lines with the trace id; set up before the test, whose log capture it keeps."""
    configure_logging(settings.LOG_LEVEL, settings.log_format, current_trace_id)
    yield
    configure_logging(settings.LOG_LEVEL, settings.log_format)


@pytest.mark.usefixtures("traced_logging")
def test_the_request_trace_id_outlives_the_request_span(caplog: pytest.LogCaptureFixture) -> None:
    """As uvicorn logs an exception that escaped the app: once the request's span has ended,
    in the request's task (here a context of its own); other tasks do not see it.
    """
    provider = tracer_provider(settings, SimpleSpanProcessor(InMemorySpanExporter()))
    server = logging.getLogger("uvicorn.error")

    def serve_a_failing_request() -> str:
        tracer = provider.get_tracer(__name__)
        with tracer.start_as_current_span("GET /api/fails", kind=SpanKind.SERVER) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
        server.error("Exception in ASGI application")
        return trace_id

    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        trace_id = contextvars.copy_context().run(serve_a_failing_request)
        server.error("in another task")

    in_request, elsewhere = [record for record in caplog.records if record.name == "uvicorn.error"]
    assert in_request.trace_id == trace_id  # type: ignore[attr-defined]
    assert elsewhere.trace_id == "-"  # type: ignore[attr-defined]
