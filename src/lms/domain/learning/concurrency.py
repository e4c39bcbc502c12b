"""What a learning write answers when what it refers to vanishes under it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg

from lms.domain.errors import NotFound


@contextlib.contextmanager
def not_found_if_deleted_meanwhile(detail: str) -> Iterator[None]:
    """A row the write refers to (the course, the enrollment, the lesson) was deleted by a
    transaction that committed while this one waited for its lock (an admin deleting the
    course): the answer is the 404 the request would get a moment later, not a 500."""
    try:
        yield
    except asyncpg.ForeignKeyViolationError:
        raise NotFound(detail) from None
