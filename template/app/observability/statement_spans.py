"""A client span around each SQL statement the app's engine sends, from SQLAlchemy's
own dialect events.

Not OpenTelemetry's SQLAlchemy instrumentation: its cursor listeners sit on the
engine, which makes SQLAlchemy join the engine's events into every connection
and check them at each step of each statement, sampled or not; it reads the
engine's URL again for every statement and counts pool checkouts for an
OpenTelemetry meter this service does not export (Prometheus has the pool): a
traced statement cost several times what it does here. And on failure it wrote
the driver's message into the span, where PostgreSQL quotes the values it refused.

A span holds the statement with its placeholders, never its parameters; a
failure names its exception type and SQLSTATE, never its message. Only a
statement inside a span (a traced request's) gets one: the health checks' and
start-up's would otherwise each start a trace of their own.
"""

from collections.abc import Callable
from typing import Any

from opentelemetry.semconv.attributes.db_attributes import (
    DB_NAMESPACE,
    DB_OPERATION_NAME,
    DB_QUERY_TEXT,
    DB_RESPONSE_STATUS_CODE,
    DB_SYSTEM_NAME,
    DbSystemNameValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.trace import SpanKind, StatusCode, Tracer, get_current_span
from sqlalchemy import Engine, event

# OpenTelemetry's conventions name the port only when it is not the default.
POSTGRESQL_PORT = 5432


class StatementSpans:
    """Runs each of `engine`'s statements through its dialect inside a span."""

    def __init__(self, tracer: Tracer, engine: Engine) -> None:
        self.tracer = tracer
        self.engine = engine
        url = engine.url
        self.database = url.database or ""
        self.attributes: dict[str, str | int] = {
            DB_SYSTEM_NAME: DbSystemNameValues.POSTGRESQL.value,
            DB_NAMESPACE: self.database,
            SERVER_ADDRESS: url.host or "localhost",
        }
        if url.port not in (None, POSTGRESQL_PORT):
            self.attributes[SERVER_PORT] = url.port
        # Each event is named after the dialect's method that it stands in for.
        self.listeners = {
            name: self.traced(getattr(engine.dialect, name))
            for name in ("do_execute", "do_executemany", "do_execute_no_params")
        }
        for name, listener in self.listeners.items():
            event.listen(engine, name, listener)

    def remove(self) -> None:
        for name, listener in self.listeners.items():
            event.remove(self.engine, name, listener)

    def traced(self, execute: Callable[..., None]) -> Callable[..., bool]:
        """A listener that runs the dialect's `execute` in a span, and says it has: the
        event does not call the dialect again when a listener returns True.
        """

        def listener(cursor: Any, statement: str, *parameters_and_context: Any) -> bool:
            if not get_current_span().get_span_context().is_valid:
                return False  # The dialect runs it, untraced.
            words = statement.split(None, 1)
            operation = words[0] if words else ""
            span = self.tracer.start_span(
                f"{operation} {self.database}",
                kind=SpanKind.CLIENT,
                attributes={
                    **self.attributes,
                    DB_OPERATION_NAME: operation,
                    DB_QUERY_TEXT: statement,
                },
            )
            try:
                execute(cursor, statement, *parameters_and_context)
            except Exception as exc:
                span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
                sqlstate = getattr(exc, "sqlstate", None)
                if isinstance(sqlstate, str):
                    span.set_attribute(DB_RESPONSE_STATUS_CODE, sqlstate)
                span.set_status(StatusCode.ERROR)
                raise
            finally:
                span.end()
            return True

        return listener
