"""Request ids and the access log, as plain ASGI middleware (see app/api/middleware.py).

Each request gets an id: the caller's `X-Request-ID` when it is a sane one
(a proxy or another service that already logged it), a new one otherwise.
It is returned in the response's `X-Request-ID`, and every log line of the
request carries it (app/core/logging.py), so one search finds them all.
"""

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.middleware import add_security_headers
from app.core.logging import request_id

REQUEST_ID_HEADER = "X-Request-ID"
# Ids of other systems are accepted when they cannot forge or garble a log line:
# bounded, and made of characters that need no escaping anywhere.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

logger = logging.getLogger("app.access")


def choose_request_id(offered: str | None) -> str:
    """The caller's id when it is valid, else a new random one."""
    if offered is not None and VALID_REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """Give each request an id, and log one line per request when it ends.

    The line has the method, the path (never the query string, which may hold
    a token), the status and the duration. It replaces uvicorn's access log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        current = choose_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        token = request_id.set(current)
        status = 500  # What the client gets when the app fails before answering.
        start = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = current
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            duration_ms = round((time.perf_counter() - start) * 1000, 1)
            logger.info(
                '"%s %s" %d %.1fms',
                scope["method"],
                scope["path"],
                status,
                duration_ms,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )
        # Kept on an exception: the server logs it next, in this same request's context.
        request_id.reset(token)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    """The 500 of an unhandled exception, with the request's id for the bug report.

    Starlette sends it from outside every middleware, after the exception went
    through RequestLogMiddleware, which leaves the id set for this; the server
    then logs the traceback, with the id too. Outside SecurityHeadersMiddleware
    too, so it adds the security headers every other response has.
    """
    response = JSONResponse(
        {"detail": "Internal Server Error"},
        status_code=500,
        headers={REQUEST_ID_HEADER: request_id.get() or ""},
    )
    settings = request.app.state.settings
    add_security_headers(
        response.headers, request.scope["path"], hsts=settings.ENVIRONMENT == "production"
    )
    return response
