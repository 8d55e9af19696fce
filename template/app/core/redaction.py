"""What error texts may say: database errors without the values they quote.

PostgreSQL's error messages quote the data they refuse: `DETAIL:  Failing row
contains (..., 'user@example.com', '$argon2id$...')`, `Key (email)=(...)
already exists`, `invalid input syntax for type integer: "..."`. asyncpg puts
them in its exceptions' text, SQLAlchemy copies that into its own (with the
statement's parameters, unless the engine hides them), and whatever formats
the exception (a log line's traceback, an error report) would send them on.

Here, an exception of the database driver is described by what an operator
needs to find the bug and nothing a user sent: its type, its SQLSTATE, the
constraint, table and column it names, and the SQL statement with its
placeholders. Every log line (app/core/logging.py) and error report
(app/observability/error_reports.py) formats exceptions through this module.
"""

import re
import traceback

from sqlalchemy.exc import StatementError

# Modules whose exceptions carry the server's message: asyncpg's, and
# SQLAlchemy's adaptation of them to the DB-API (`...asyncpg.IntegrityError`).
DRIVER_MODULES = ("asyncpg", "sqlalchemy.dialects")
# The structured fields of a PostgreSQL error that name schema objects, not data.
NAMED_FIELDS = ("constraint_name", "table_name", "column_name", "data_type_name")
# The parts of a message made from another exception's text: PostgreSQL's
# DETAIL (and HINT) lines, and SQLAlchemy's parameters.
QUOTED_DATA = re.compile(
    r"\n(?:DETAIL|HINT):[^\n]*|\[parameters: .*?(?=\n\(Background on this error|\Z)", re.S
)

CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def redact_text(text: str) -> str:
    """`text` less PostgreSQL's DETAIL and HINT lines and SQLAlchemy's parameters."""
    return QUOTED_DATA.sub("", text)


def from_driver(exc: BaseException) -> bool:
    return type(exc).__module__.startswith(DRIVER_MODULES)


def describe(exc: BaseException) -> str:
    """The message of `exc`, or for a database error its safe description."""
    if isinstance(exc, StatementError):
        orig = exc.orig
        cause = f"({qualified_name(orig)}) {describe(orig)}" if orig is not None else ""
        return f"{cause}\n[SQL: {exc.statement}]" if exc.statement else cause
    if from_driver(exc):
        # SQLAlchemy's adaptation names the driver's exception as its cause.
        origin = exc.__cause__ if exc.__cause__ is not None else exc
        fields = [type(origin).__name__] if origin is not exc else []
        if sqlstate := getattr(exc, "sqlstate", None):
            fields.append(f"SQLSTATE {sqlstate}")
        fields += [
            f"{name.removesuffix('_name')} {value}"
            for name in NAMED_FIELDS
            if (value := getattr(origin, name, None))
        ]
        return ", ".join(fields) or "(message withheld: it may quote data)"
    return redact_text(str(exc))


def qualified_name(exc: BaseException) -> str:
    kind = type(exc)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def chain(exc: BaseException) -> list[tuple[BaseException, str]]:
    """`exc` and the exceptions it was raised from or during, oldest first, as Python
    prints them: each with the sentence printed after it, which leads to the next.
    """
    newest_first: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        newest_first.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, CONTEXT
        else:
            current = None
    return newest_first[::-1]


def format_exception(exc: BaseException) -> str:
    """The traceback of `exc` as Python prints it, each message through `describe`."""
    parts: list[str] = []
    for exception, link in chain(exc):
        if exception.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(exception.__traceback__))
        message = describe(exception)
        parts.append(f"{qualified_name(exception)}{': ' if message else ''}{message}\n")
        parts.append(link)
    return "".join(parts).rstrip("\n")
