"""Password hashing off the event loop, one hash at a time per worker."""

import asyncio
import os
import sys
import threading
import time

from pwdlib import PasswordHash

from app.core.security import HASHING_NICENESS, ThreadedPasswordHelper
from tests.factories import CheapArgon2Hasher


class WatchedHasher(CheapArgon2Hasher):
    """The suite's cheap Argon2, noting where each hash runs and how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()
        self.niceness: set[int] = set()
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        with self._lock:
            self.threads.add(threading.current_thread().name)
            if sys.platform == "linux":
                self.niceness.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        # Long enough for the others to start, if they were allowed to.
        time.sleep(0.02)
        with self._lock:
            self.running -= 1
        return super().hash(password, salt=salt)

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        self.threads.add(threading.current_thread().name)
        return super().verify(password, hash)


async def test_hashes_run_in_the_hashing_thread_one_at_a_time() -> None:
    hasher = WatchedHasher()
    helper = ThreadedPasswordHelper(PasswordHash((hasher,)))

    hashes = await asyncio.gather(*(helper.hash_async(f"password {n}") for n in range(4)))

    assert len(set(hashes)) == 4
    assert hasher.threads == {"argon2_0"}
    assert hasher.most_at_once == 1


async def test_verification_runs_in_the_hashing_thread() -> None:
    hasher = WatchedHasher()
    helper = ThreadedPasswordHelper(PasswordHash((hasher,)))
    stored = hasher.hash("correct horse")
    hasher.threads.clear()

    verified, updated = await helper.verify_and_update_async("correct horse", stored)

    assert (verified, updated) == (True, None)
    assert hasher.threads == {"argon2_0"}


async def test_the_hashing_thread_yields_the_cpu_to_the_event_loop() -> None:
    """On Linux, where each thread has a priority of its own."""
    hasher = WatchedHasher()
    helper = ThreadedPasswordHelper(PasswordHash((hasher,)))

    await helper.hash_async("correct horse")

    if sys.platform == "linux":
        event_loop = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        assert hasher.niceness == {min(19, event_loop + HASHING_NICENESS)}
    else:
        assert hasher.niceness == set()
