"""Passwords: the rules a new one must meet, and hashing that keeps the event loop free.

An Argon2 hash or verification costs about 0.1 s of CPU on purpose. fastapi-users
calls the hasher synchronously inside `async def` handlers, so one login would
stall every other request on the worker for that long. This helper runs the
work in a thread: the event loop keeps serving while Argon2 runs.

One thread per worker process, not one per login: with a thread each, a burst
of logins filled both cores with Argon2 (64 MiB each) and the event loop
starved, so `GET /api/users/me` stopped answering for seconds. Logins beyond
the one hashing wait their turn, costing nothing; with one worker per core,
every core can still hash. The hashing thread also runs at a lower CPU
priority, so that requests on the event loop go first.
"""

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar

from fastapi_users.password import PasswordHelper

PASSWORD_MIN_LENGTH = 8
# Argon2 accepts anything, but a megabyte "password" is an attack, not a secret.
PASSWORD_MAX_LENGTH = 128
# How much lower the hashing thread's CPU priority is than the event loop's.
HASHING_NICENESS = 10


def password_problem(password: str, email: str) -> str | None:
    """What is wrong with `password` as the password of `email`, or None."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"Password must be at least {PASSWORD_MIN_LENGTH} characters long"
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"Password must be at most {PASSWORD_MAX_LENGTH} characters long"
    if "\x00" in password:
        return "Password must not contain NUL characters"
    if email.lower() in password.lower():
        return "Password must not contain the e-mail address"
    return None


def _yield_cpu_to_the_event_loop() -> None:
    """Lower the hashing thread's priority: when both want a core, the event loop wins.

    Linux gives each thread its own nice value (inherited by the threads Argon2
    starts). Raising it needs no privilege; elsewhere the thread keeps its priority.
    """
    if sys.platform == "linux":
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + HASHING_NICENESS))


_hashing_thread = ThreadPoolExecutor(
    max_workers=1, thread_name_prefix="argon2", initializer=_yield_cpu_to_the_event_loop
)


async def _in_hashing_thread[*Ts, T](function: Callable[[*Ts], T], *args: *Ts) -> T:
    return await asyncio.get_running_loop().run_in_executor(_hashing_thread, function, *args)


# The hash computed ahead of the library's synchronous `hash()` call, for the
# current request only (a context variable never leaks across requests).
_prepared_hash: ContextVar[tuple[str, str] | None] = ContextVar("prepared_hash", default=None)


class ThreadedPasswordHelper(PasswordHelper):
    """fastapi-users' Argon2 helper with thread-offloaded variants of its work."""

    async def prepare_hash(self, password: str) -> None:
        """Hash `password` in a thread; the next `hash(password)` returns the result.

        The user manager calls this from `validate_password`, which fastapi-users
        awaits right before it hashes the new password synchronously.
        """
        hashed = await _in_hashing_thread(super().hash, password)
        _prepared_hash.set((password, hashed))

    def hash(self, password: str) -> str:
        prepared = _prepared_hash.get()
        if prepared is not None and prepared[0] == password:
            _prepared_hash.set(None)
            return prepared[1]
        return super().hash(password)

    async def verify_and_update_async(
        self, plain_password: str, hashed_password: str
    ) -> tuple[bool, str | None]:
        return await _in_hashing_thread(self.verify_and_update, plain_password, hashed_password)

    async def hash_async(self, password: str) -> str:
        return await _in_hashing_thread(super().hash, password)


password_helper = ThreadedPasswordHelper()
