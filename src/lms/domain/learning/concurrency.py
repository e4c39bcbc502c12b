"""What a learning write answers when what it refers to vanishes under it."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import asyncpg

from lms.domain.errors import NotFound

T = TypeVar("T")


@contextlib.contextmanager
def not_found_if_deleted_meanwhile(detail: str) -> Iterator[None]:
    """A row the write refers to (the course, the enrollment, the lesson) was deleted by a
    transaction that committed while this one waited for its lock (an admin deleting the
    course): the answer is the 404 the request would get a moment later, not a 500."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError:
        raise NotFound(detail) from None


# Waits before each new try of a statement failed to break a deadlock (jittered by up to half).
DEADLOCK_BACKOFF_SECONDS = (0.01, 0.05, 0.2, 0.5)


async def again_after_deadlock(statement: Callable[[], Awaitable[T]]) -> T:
    """Run a one-statement write, again if PostgreSQL failed it to break a deadlock.
    Learning writes lock an enrollment before its lesson rows; a deletion cascading through
    them (a course's lessons and their progress, then its enrollments) takes them the other
    way. The failed statement changed nothing. Running it again at once can win the race for
    the enrollment's lock against the deletion it was failed for (that one is only just waking)
    and deadlock with it once more, so each new try waits a little first: by then the deletion
    holds what it waited for, the statement queues behind it and finds what is left (a 404
    where it was deleted). After the last wait the error stands."""
    for wait in DEADLOCK_BACKOFF_SECONDS:
        try:
            return await statement()
        except asyncpg.DeadlockDetectedError:
            await asyncio.sleep(wait * (0.5 + random.random() / 2))  # noqa: S311 - jitter
    return await statement()
