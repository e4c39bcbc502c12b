"""Password hashing with argon2id, off the event loop and out of its default thread pool.

A hash or a verification costs 64 MiB and about 100 ms of CPU. Run in the default pool, a flood
of sign-ins would take every one of its threads, and the file I/O, PDF rendering and password
strength checks that share them would wait behind it. So argon2 has a small executor of its own
(LMS_PASSWORD_HASH_THREADS threads) with a bounded queue (LMS_PASSWORD_HASH_QUEUE): when both are
full a request is refused at once with 503 and Retry-After instead of piling up, and callers check
everything cheaper first, so a request that cannot succeed never asks for a hash.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from lms.domain.errors import Unavailable
from lms.settings import Settings

# argon2-cffi's defaults are RFC 9106's low-memory profile (argon2id, t=3, m=64 MiB, p=4), above
# OWASP's minimum (m=19 MiB, t=2, p=1).
_hasher = PasswordHasher()

MIN_PASSWORD_LENGTH = 10

T = TypeVar("T")


class HashingExecutor:
    """At most `threads` jobs run and `queue` more wait; past that, run() refuses at once."""

    def __init__(self, threads: int, queue: int) -> None:
        self.threads = threads
        self.queue = queue
        self.capacity = threads + queue
        # Released by the job's own completion, not by the awaiting request: a request that is
        # cancelled (the client hung up) leaves its hash running, and its place stays taken
        # until the thread is really free.
        self._places = threading.BoundedSemaphore(self.capacity)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        # Made on first use, in the process that uses it (Granian forks its workers).
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="argon2")
            return self._executor

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if not self._places.acquire(blocking=False):
            raise Unavailable("too many sign-ins at once; try again in a moment", retry_after=1)
        try:
            job: Future[T] = self._pool().submit(fn, *args)
        except BaseException:
            self._places.release()
            raise
        job.add_done_callback(lambda _: self._places.release())
        return await asyncio.wrap_future(job)

    def shutdown(self) -> None:
        """Stop taking jobs; those running finish."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False)


# Sized by the settings' defaults until the app (or a command) configures it.
_DEFAULTS = Settings()
_executor = HashingExecutor(_DEFAULTS.password_hash_threads, _DEFAULTS.password_hash_queue)


def configure_hashing(threads: int, queue: int) -> None:
    """Size this process's executor (the app does, from its settings); the same size keeps the
    running one."""
    global _executor
    if (threads, queue) == (_executor.threads, _executor.queue):
        return
    previous, _executor = _executor, HashingExecutor(threads, queue)
    previous.shutdown()


def hashing_executor() -> HashingExecutor:
    return _executor


async def hash_password(password: str) -> str:
    return await _executor.run(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    return await _executor.run(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
