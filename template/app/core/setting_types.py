"""Types of settings that pydantic alone would accept wrongly or refuse needlessly.

Apart from app/core/config.py so that it reads as the list of settings; each check
runs once, when the settings are read, and names what is wrong in one line.
"""

import os
from typing import Annotated

from limits import parse
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from pydantic import AfterValidator, BeforeValidator, PostgresDsn


def _with_asyncpg_driver(value: object) -> object:
    """Accept the plain URLs that hosting providers hand out."""
    if isinstance(value, str):
        for scheme in ("postgres://", "postgresql://"):
            if value.startswith(scheme):
                return "postgresql+asyncpg://" + value.removeprefix(scheme)
    return value


def _rate_limit(value: str) -> str:
    try:
        allowed = parse(value).amount
    except ValueError:
        allowed = 0
    if allowed < 1:
        raise ValueError(f"{value!r} is not a rate limit: write it like '10/15 minutes'")
    return value


def _async_storage(value: str) -> str:
    """The limiter awaits its storage: only the async variants of `limits` fit."""
    if not value.startswith("async+"):
        raise ValueError(
            f"{value!r} is not an async storage: use async+memory:// or async+redis://..."
        )
    try:
        # Parses the URI and finds the store's client library; connects to nothing.
        storage_from_string(value)
    except ConfigurationError as exc:
        # Without the URI, which may hold Redis's password.
        reason = str(exc).replace(value.removeprefix("async+"), "the URI")
        raise ValueError(f"cannot use this store: {reason}") from None
    return value


def _writable_folder(value: str) -> str:
    """Checked here: prometheus-client would fail on the first request instead."""
    if not (os.path.isdir(value) and os.access(value, os.W_OK | os.X_OK)):
        raise ValueError(f"{value!r} is not an existing folder this process may write to")
    return value


DatabaseUrl = Annotated[PostgresDsn, BeforeValidator(_with_asyncpg_driver)]
# Failed logins in a moving window, in the notation of `limits` ("10/15 minutes").
RateLimit = Annotated[str, AfterValidator(_rate_limit)]
AsyncStorageUri = Annotated[str, AfterValidator(_async_storage)]
WritableFolder = Annotated[str, AfterValidator(_writable_folder)]
