"""Error reports to Sentry, when SENTRY_DSN is set; imported only then.

Reported: unhandled exceptions (the 500s), with the request id as the tag
`request_id`, the ENVIRONMENT and the release (SENTRY_RELEASE). Not reported:
4xx answers and the 503 of an unreachable database, which an exception handler
answers (app/api/errors.py) and are no bug.

Nothing that may hold a secret or a user's data leaves: no request body,
cookie, query string, local variable or user identity; the Authorization and
Cookie headers are dropped; a database error is described by its type,
SQLSTATE, constraint and statement, never by the values PostgreSQL quotes
(app/core/redaction.py); and every secret setting's value (the keys of `.env`,
the database password, the DSN itself) and every e-mail address is replaced
wherever it still appears in the report, log lines' messages included.
"""

import re
from collections.abc import Callable, Iterable
from typing import Any

import sentry_sdk
from sentry_sdk.types import Event, Hint

from app.core.logging import request_id
from app.core.redaction import chain, describe, redact_text

FILTERED = "[Filtered]"
SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "x-api-key"})
# Loose on purpose: a report loses nothing an operator needs by losing an address.
EMAIL_ADDRESS = re.compile(r"[^\s@'\"<>(),;:]+@[^\s@'\"<>(),;:]+\.[A-Za-z]{2,}")


def scrubbed(value: Any, secrets: tuple[str, ...]) -> Any:
    """`value` with every secret, e-mail address and quoted database value replaced,
    however deep.
    """
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, FILTERED)
        return EMAIL_ADDRESS.sub(FILTERED, redact_text(value))
    if isinstance(value, dict):
        return {key: scrubbed(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(item, secrets) for item in value]
    return value


def before_send(secrets: tuple[str, ...]) -> Callable[[Event, Hint], Event]:
    def scrub(event: Event, hint: Hint) -> Event:
        report: dict[str, Any] = dict(event)
        request: dict[str, Any] | None = report.get("request")
        if request is not None:
            for field in ("cookies", "data", "query_string"):
                request.pop(field, None)
            headers: dict[str, str] = request.get("headers") or {}
            request["headers"] = {
                name: value for name, value in headers.items() if name.lower() not in SECRET_HEADERS
            }
        describe_exceptions(report, hint)
        current = request_id.get()
        if current is not None:
            report["tags"] = {**(report.get("tags") or {}), "request_id": current}
        result: Event = scrubbed(report, secrets)
        return result

    return scrub


def describe_exceptions(report: dict[str, Any], hint: Hint) -> None:
    """Each exception's value as app/core/redaction.py describes it: the SDK copied
    the exception's own text, which for a database error quotes the data refused.
    """
    exc_info = hint.get("exc_info")
    if not exc_info or exc_info[1] is None:
        return
    descriptions = {str(exc): describe(exc) for exc, _ in chain(exc_info[1])}
    for value in (report.get("exception") or {}).get("values") or []:
        text = value.get("value")
        if isinstance(text, str):
            value["value"] = descriptions.get(text, text)


def start_error_reports(
    dsn: str, environment: str, release: str | None, secrets: Iterable[str]
) -> None:
    # Longest first: a secret that contains another is replaced whole.
    known = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        # No user identity, cookie, body, query string, local variable or SQL parameter at all.
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "stack_frame_variables": False,
            "database_query_data": False,
        },
        before_send=before_send(known),
        # Errors only: traces are OpenTelemetry's (app/observability/tracing.py).
        traces_sample_rate=None,
    )
