"""What a learning write answers when what it refers to vanishes under it."""

from __future__ import annotations

import contextlib
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


async def again_after_deadlock(statement: Callable[[], Awaitable[T]]) -> T:
    """Run a one-statement write, and once more if PostgreSQL failed it to break a deadlock.
    Learning writes lock an enrollment before its lesson rows; a deletion cascading through
    them (a course's lessons and their progress, then its enrollments) takes them the other
    way. The failed statement changed nothing, and the deletion it made way for has finished
    by the time it runs again, which then finds what is left (a 404 where it was deleted)."""
    try:
        return await statement()
    except asyncpg.DeadlockDetectedError:
        return await statement()
