"""OpenTelemetry traces: a span per request, with a child span per SQL statement
(statement_spans.py) and per outgoing httpx call, exported with OTLP over HTTP.

Imported only when an OTLP endpoint is set (Settings.tracing_enabled): without
it the service loads none of OpenTelemetry's SDK and pays nothing per request.
The endpoint, the sampler and the service name come from the settings, in
OpenTelemetry's own variables; the SDK reads its other OTEL_* variables
(headers, resource attributes, batching) from the environment.

Request spans are FastAPI's own (its native telemetry, named after the route
template): about half the work of OpenTelemetry's ASGI middleware, which looks
the route up again on every request. SQL statements are traced on the app's
engine only.

What spans hold: the route template, the method, the status, the SQL text with
its placeholders (never the parameters), the path, and the query string with
its values redacted (an OAuth callback's code travels there). No header or body.
"""

from contextvars import ContextVar
from urllib.parse import parse_qsl, urlencode

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.observability.statement_spans import StatementSpans

REDACTED = "REDACTED"

# The trace id of the request this task serves, kept after its span has ended.
request_trace_id: ContextVar[str] = ContextVar("request_trace_id", default="-")


class RedactQueryValues(SpanProcessor):
    """Keep the query string's names and drop its values, as each span starts."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        query = (span.attributes or {}).get("url.query")
        if isinstance(query, str):
            names = [(name, REDACTED) for name, _ in parse_qsl(query, keep_blank_values=True)]
            span.set_attribute("url.query", urlencode(names))


class RememberRequestTraceId(SpanProcessor):
    """Keep each request's trace id for the rest of the task that serves it.

    uvicorn logs an exception that escaped the app once the request's span has
    ended: that traceback line still carries the trace id (`current_trace_id`).
    Each request is a task of its own: the id goes with it.
    """

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        if span.kind is SpanKind.SERVER:
            request_trace_id.set(format(span.context.trace_id, "032x"))


def sampler(settings: Settings) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER names, with OTEL_TRACES_SAMPLER_ARG's ratio."""
    name = settings.OTEL_TRACES_SAMPLER
    roots = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": TraceIdRatioBased(settings.OTEL_TRACES_SAMPLER_ARG),
    }
    root = roots[name.removeprefix("parentbased_")]
    return ParentBased(root) if name.startswith("parentbased_") else root


def traces_endpoint(settings: Settings) -> str:
    """Where spans go: the traces endpoint as given, or the OTLP endpoint's /v1/traces."""
    if settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is not None:
        return str(settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    return f"{str(settings.OTEL_EXPORTER_OTLP_ENDPOINT).rstrip('/')}/v1/traces"


def tracer_provider(settings: Settings, export: SpanProcessor) -> TracerProvider:
    """A provider that samples as the settings say, redacts query strings, and hands
    each span to `export`.

    OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins over the
    project's name, which only replaces OpenTelemetry's "unknown_service".
    """
    if settings.OTEL_SERVICE_NAME is not None:
        resource = Resource.create({SERVICE_NAME: settings.OTEL_SERVICE_NAME})
    else:
        resource = Resource.create()
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: settings.PROJECT_NAME}))
    provider = TracerProvider(resource=resource, sampler=sampler(settings))
    provider.add_span_processor(RedactQueryValues())
    provider.add_span_processor(RememberRequestTraceId())
    provider.add_span_processor(export)
    return provider


def current_trace_id() -> str:
    """The current span's trace id; after the request's span, the request's; else "-"."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return format(span_context.trace_id, "032x")
    return request_trace_id.get()


def start_tracing(settings: Settings) -> TracerProvider:
    """A provider exporting in batches over OTLP, made global (FastAPI's request spans
    use it), with every httpx client's calls traced.
    """
    exporter = OTLPSpanExporter(traces_endpoint(settings))
    provider = tracer_provider(settings, BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    return provider


def trace_statements(engine: AsyncEngine, provider: TracerProvider) -> StatementSpans:
    """A span for each statement `engine` runs (until its `remove()`)."""
    return StatementSpans(provider.get_tracer(__name__), engine.sync_engine)
