"""ASGI middleware: request size limit and security headers.

Written as plain ASGI callables rather than `BaseHTTPMiddleware`, which costs
a task and a copy of every response body per request.
"""

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Applied to API responses; /docs and /redoc run inline scripts, which this policy forbids.
API_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
HSTS = "max-age=63072000; includeSubDomains"


class BodySizeLimitMiddleware:
    """Refuse request bodies above `max_bytes` with 413 before they fill memory.

    Not FastAPI's own `max_body_size`: that checks a declared length only when the
    endpoint reads the body or starts its response, so an endpoint that reads none
    (a DELETE) would run first, and its answer be replaced by a plain-text 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # Outside the app's exception handling: answer directly.
            too_large = self._too_large()
            response = JSONResponse({"detail": too_large.detail}, too_large.status_code)
            await response(scope, receive, send)
            return

        # Bodies without a declared length are counted as they stream in; the
        # app's exception handling turns the exception into the 413 response.
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"Request body larger than {self.max_bytes} bytes")


def add_security_headers(headers: MutableHeaders, path: str, *, hsts: bool) -> None:
    """The security headers of a response to `path`, where it did not set its own."""
    if path.startswith("/api"):
        for name, value in API_SECURITY_HEADERS.items():
            headers.setdefault(name, value)
    else:
        headers.setdefault("X-Content-Type-Options", "nosniff")
    if hsts:
        headers.setdefault("Strict-Transport-Security", HSTS)


class SecurityHeadersMiddleware:
    """Add headers that keep browsers from sniffing, framing or leaking API responses.

    The 500 of an unhandled exception is sent from outside every middleware:
    `server_error` (app/api/request_log.py) adds them to it.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message), scope["path"], hsts=self.hsts)
            await send(message)

        await self.app(scope, receive, send_with_headers)
