"""OpenTelemetry traces: a span per request, with a child span per SQL statement
(statement_spans.py) and per outgoing httpx call, exported with OTLP over HTTP.

Imported only when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set:
without it the service loads none of OpenTelemetry's SDK and pays nothing per
request. The exporter, the sampler (OTEL_TRACES_SAMPLER), the service name and
the resource read the standard OTEL_* variables, as OpenTelemetry documents them.

Request spans are FastAPI's own (its native telemetry, named after the route
template): about half the instructions of OpenTelemetry's ASGI middleware, which
looks the route up again on every request. SQL statements are traced on the
app's engine only.

What spans hold: the route template, the method, the status, the SQL text with
its placeholders (never the parameters), the path, and the query string with
its values redacted (an OAuth callback's code travels there). No header or body.
"""

from urllib.parse import parse_qsl, urlencode

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import logging as app_logging
from app.observability.statement_spans import StatementSpans

REDACTED = "REDACTED"


class RedactQueryValues(SpanProcessor):
    """Keep the query string's names and drop its values, as each span starts."""

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        query = (span.attributes or {}).get("url.query")
        if isinstance(query, str):
            names = [(name, REDACTED) for name, _ in parse_qsl(query, keep_blank_values=True)]
            span.set_attribute("url.query", urlencode(names))


def exporting_provider(service_name: str) -> TracerProvider:
    """A provider that exports in batches to the OTLP endpoint of the OTEL_* variables.

    OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins over the
    project's name, which only replaces OpenTelemetry's "unknown_service".
    """
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else "-"


def instrument(engine: AsyncEngine, provider: TracerProvider) -> StatementSpans:
    """Trace `engine`'s statements and every httpx client's calls; redact queries.

    Request spans come from FastAPI itself, with the provider it was given.
    """
    provider.add_span_processor(RedactQueryValues())
    statements = StatementSpans(provider.get_tracer(__name__), engine.sync_engine)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    app_logging.trace_id_source = current_trace_id
    return statements


def uninstrument(statements: StatementSpans) -> None:
    """Undo `instrument` (the tests trace in a process that goes on)."""
    statements.remove()
    HTTPXClientInstrumentor().uninstrument()
    app_logging.trace_id_source = None


def start_tracing(engine: AsyncEngine, service_name: str) -> TracerProvider:
    """The exporting provider, made global, with the engine and httpx instrumented."""
    provider = exporting_provider(service_name)
    trace.set_tracer_provider(provider)
    instrument(engine, provider)
    return provider
