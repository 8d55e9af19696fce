"""OpenTelemetry traces: a span per request, with a child span per SQL statement and
per outgoing httpx call, exported with OTLP over HTTP.

Imported only when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set:
without it the service loads none of OpenTelemetry and pays nothing per request.
The exporter, the sampler (OTEL_TRACES_SAMPLER), the service name and the
resource read the standard OTEL_* variables, as OpenTelemetry documents them.

What spans hold: the route template, the method, the status, the SQL text with
its placeholders (never the parameters) and the path without its query string
(an OAuth callback's code travels there). No header, body or parameter value.
"""

from typing import Any

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import logging as app_logging

# Span attributes that carry the query string, under the old and the new conventions.
QUERY_ATTRIBUTES = ("http.target", "http.url", "url.query", "url.full")


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


def without_query_string(span: Span, scope: dict[str, Any]) -> None:
    """Put the path back where the instrumentation recorded the path and its query."""
    if not span.is_recording():
        return
    path = scope.get("path", "")
    for name in QUERY_ATTRIBUTES:
        span.set_attribute(name, path)


def current_trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else "-"


def instrument(app: FastAPI, engine: AsyncEngine, provider: TracerProvider) -> None:
    """Trace `app`'s requests, `engine`'s statements and every httpx client's calls."""
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        server_request_hook=without_query_string,
        # A span per ASGI message of every request: cost, and nothing to read in them.
        exclude_spans=["receive", "send"],
    )
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=provider, enable_commenter=False
    )
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    app_logging.trace_id_source = current_trace_id


def uninstrument(app: FastAPI) -> None:
    """Undo `instrument` (the tests trace one app in a process that goes on)."""
    FastAPIInstrumentor.uninstrument_app(app)
    SQLAlchemyInstrumentor().uninstrument()
    HTTPXClientInstrumentor().uninstrument()
    app_logging.trace_id_source = None


def start_tracing(app: FastAPI, engine: AsyncEngine, service_name: str) -> TracerProvider:
    """Instrument and export; the provider, to shut down (and flush) at the end."""
    provider = exporting_provider(service_name)
    trace.set_tracer_provider(provider)
    instrument(app, engine, provider)
    return provider
