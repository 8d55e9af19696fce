"""Failed logins are limited per e-mail address and per client IP.

Guessing a password online takes many failed logins. After
LOGIN_FAILURES_PER_EMAIL failures for one address, or LOGIN_FAILURES_PER_IP
from one client, within a moving window, `POST /api/auth/login` answers 429
with `Retry-After` until the oldest failure leaves the window. Only failures
count, so people and scripts that log in often are never held up. The check
runs before the password is verified: refused attempts cost no Argon2 work.
An attempt in progress holds its place, so a burst of concurrent guesses
cannot slip past the limit while none of them has failed yet.

The counts live in the store of LOGIN_LIMIT_STORAGE_URI (`limits` library):
by default this process's memory, which restarts empty and is not shared
between worker processes. The README's "Failed logins" says what that means.
When a shared store does not answer, logins answer 503: failing open would
lift the limit for anyone who can make the store unreachable.
"""

import asyncio
import hmac
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, cast

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordRequestForm
from fastapi_users.openapi import OpenAPIResponseType
from fastapi_users.router.common import ErrorCode, ErrorModel
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from starlette.routing import BaseRoute

from app.core.config import Settings, settings
from app.observability.metrics import LOGIN_FAILURES, LOGIN_LIMITED

logger = logging.getLogger(__name__)

TOO_MANY_FAILED_LOGINS = "LOGIN_TOO_MANY_FAILURES"
LIMIT_STORE_UNAVAILABLE = "LOGIN_LIMIT_UNAVAILABLE"
# Seconds a client is told to wait when the store does not answer; also how long
# the start-up check waits for it.
STORE_RETRY_SECONDS = 5

TOO_MANY_FAILED_LOGINS_RESPONSE: OpenAPIResponseType = {
    status.HTTP_429_TOO_MANY_REQUESTS: {
        "model": ErrorModel,
        "description": "Too many failed logins for this e-mail address or client IP.",
        "headers": {
            "Retry-After": {
                "description": "Seconds until the next attempt is allowed.",
                "schema": {"type": "integer"},
            }
        },
        "content": {
            "application/json": {
                "example": {
                    "detail": {
                        "code": TOO_MANY_FAILED_LOGINS,
                        "reason": "Too many failed logins: try again in 120 seconds",
                    }
                }
            }
        },
    }
}

# Limit name ("email" or "ip") -> the identifier it counts for this request.
Keys = dict[str, str]


class TooManyFailedLoginsError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class FailedLoginLimiter:
    """Moving windows of failed logins, one per e-mail address and one per client IP."""

    def __init__(self, storage_uri: str, per_email: str, per_ip: str) -> None:
        # An async store (the settings accept no other); its errors, whatever the
        # store, raised as StorageError.
        self.storage = cast(Storage, storage_from_string(storage_uri, wrap_exceptions=True))
        self._limiter = MovingWindowRateLimiter(self.storage)
        self.limits: dict[str, RateLimitItem] = {"email": parse(per_email), "ip": parse(per_ip)}
        # Attempts admitted and not finished yet, per (limit name, identifier).
        self._in_flight: Counter[tuple[str, str]] = Counter()

    async def admit(self, keys: Keys) -> None:
        """Hold a place for one attempt, or raise TooManyFailedLoginsError.

        Every attempt in progress counts as a failure until it is released, so
        at most as many attempts run as there are failures left in the window.
        """
        self._in_flight.update(keys.items())
        try:
            for name, identifier in keys.items():
                item = self.limits[name]
                in_flight = self._in_flight[name, identifier]
                if not await self._limiter.test(item, name, identifier, cost=in_flight):
                    stats = await self._limiter.get_window_stats(item, name, identifier)
                    # A window full of failures frees a place when the oldest leaves
                    # it; otherwise, when one of the attempts in progress ends.
                    wait = stats.reset_time - time.time() if stats.remaining <= 0 else 1
                    raise TooManyFailedLoginsError(max(1, math.ceil(wait)))
        except BaseException:
            self.release(keys)
            raise

    async def record_failure(self, keys: Keys) -> None:
        for name, identifier in keys.items():
            await self._limiter.hit(self.limits[name], name, identifier)

    async def store_answers(self) -> bool:
        try:
            async with asyncio.timeout(STORE_RETRY_SECONDS):
                return bool(await self.storage.check())
        except (StorageError, TimeoutError):
            return False

    def release(self, keys: Keys) -> None:
        self._in_flight.subtract(keys.items())
        for key in keys.items():
            if self._in_flight[key] <= 0:
                del self._in_flight[key]

    @classmethod
    def from_settings(cls, settings: Settings) -> "FailedLoginLimiter":
        return cls(
            settings.LOGIN_LIMIT_STORAGE_URI,
            settings.LOGIN_FAILURES_PER_EMAIL,
            settings.LOGIN_FAILURES_PER_IP,
        )


# The key of the e-mails' hashes: derived from ACCESS_SECRET_KEY, so that every
# instance counts an address under the same name, and only they can compute it.
EMAIL_KEY = hmac.digest(
    settings.ACCESS_SECRET_KEY.get_secret_value().encode(), b"failed-login limit", "sha256"
)


def email_key(email: str) -> str:
    """The name failures of `email` count under: the address as the user lookup compares
    it (case-insensitively), as a keyed hash, so that a shared store (Redis) never holds
    the addresses people log in with.
    """
    return hmac.digest(EMAIL_KEY, email.lower().encode(), "sha256").hex()


def login_keys(request: Request, email: str) -> Keys:
    # The client is the TCP peer, or the address a trusted proxy forwarded (uvicorn's
    # --forwarded-allow-ips); without one, every client behind a proxy shares it.
    return {"email": email_key(email), "ip": request.client.host if request.client else "unknown"}


async def limit_failed_logins(
    request: Request,
    credentials: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> AsyncIterator[None]:
    """Dependency of the login route: 429 when limited, count the attempt if it fails."""
    limiter = cast(FailedLoginLimiter, request.app.state.login_limiter)
    keys = login_keys(request, credentials.username)
    try:
        await limiter.admit(keys)
    except StorageError as exc:
        raise store_unavailable(exc) from exc
    except TooManyFailedLoginsError as exc:
        LOGIN_LIMITED.inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail={
                "code": TOO_MANY_FAILED_LOGINS,
                "reason": f"Too many failed logins: try again in {exc.retry_after} seconds",
            },
            headers={"Retry-After": str(exc.retry_after)},
        ) from exc
    try:
        yield
    except HTTPException as exc:
        if exc.detail == ErrorCode.LOGIN_BAD_CREDENTIALS:
            LOGIN_FAILURES.inc()
            try:
                await limiter.record_failure(keys)
            except StorageError as storage_error:
                raise store_unavailable(storage_error) from storage_error
        raise
    finally:
        limiter.release(keys)


def store_unavailable(exc: StorageError) -> HTTPException:
    logger.warning(
        "Login refused: the store of LOGIN_LIMIT_STORAGE_URI does not answer (%r)",
        exc.storage_error,
    )
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        detail={
            "code": LIMIT_STORE_UNAVAILABLE,
            "reason": "Logins are unavailable for a moment, try again shortly",
        },
        headers={"Retry-After": str(STORE_RETRY_SECONDS)},
    )


async def warn_if_store_is_down(limiter: FailedLoginLimiter) -> None:
    """At start-up: say which setting to check, without holding the service back.

    Everything but logins works without the store, and it may come up later.
    """
    if not await limiter.store_answers():
        logger.warning(
            "The store of LOGIN_LIMIT_STORAGE_URI does not answer: logins answer 503 until it does"
        )


def limit_logins_of(auth_router: APIRouter) -> APIRouter:
    """fastapi-users' login/logout router, with the login route limited."""
    login: list[BaseRoute] = [
        r for r in auth_router.routes if isinstance(r, APIRoute) and r.path == "/login"
    ]
    router = APIRouter()
    router.include_router(
        APIRouter(routes=login),
        dependencies=[Depends(limit_failed_logins)],
        responses=TOO_MANY_FAILED_LOGINS_RESPONSE,
    )
    router.include_router(APIRouter(routes=[r for r in auth_router.routes if r not in login]))
    return router
