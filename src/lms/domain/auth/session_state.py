"""Per-process cache of whether a login (a refresh token family) has been revoked, so an access
token naming its login costs no database round trip, yet a revocation applies on the next request.

A login ends when its refresh tokens are revoked: a replayed refresh token (it may have been
stolen), logout, a password reset, a deactivation. A trigger on `refresh_tokens` NOTIFYs
`lms_session_revoked` with the family id whenever one of its tokens is revoked, whoever revokes it,
and every process drops that entry. While the LISTEN connection is down nothing is cached and
every check reads the table; no entry outlives MAX_AGE_SECONDS in any case.
"""

from __future__ import annotations

import uuid

import asyncpg

from lms.db.queries import refresh_tokens as sql
from lms.invariants import present
from lms.notifications.cache import NotifiedCache
from lms.notifications.listener import Subscriber

CHANNEL = "lms_session_revoked"
MAX_ENTRIES = 100_000
# A backstop, as for the user cache: should a notification ever be missed unseen, no entry
# outlives this.
MAX_AGE_SECONDS = 60.0


def _session_id(payload: str) -> uuid.UUID | None:
    """The family a notification names; anything else drops every entry."""
    try:
        return uuid.UUID(payload)
    except ValueError:
        return None


class SessionStateCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._db: asyncpg.Pool | None = None
        # The value is "revoked": False is cached as readily as True (None would not be).
        self._cache = NotifiedCache[uuid.UUID, bool](
            self._load,
            key_of=_session_id,
            max_age=MAX_AGE_SECONDS,
            max_age_unheard=0.0,
            max_entries=max_entries,
        )

    def bind(self, db: asyncpg.Pool) -> None:
        """The pool to read refresh tokens from, once the app has started it."""
        self._db = db

    async def revoked(self, session_id: uuid.UUID) -> bool:
        return bool(await self._cache.get(session_id))

    def invalidate(self, session_id: uuid.UUID) -> None:
        """After this process revoked the login: do not wait for the notification."""
        self._cache.invalidate(session_id)

    def subscriber(self) -> Subscriber:
        return self._cache.subscriber()

    async def _load(self, session_id: uuid.UUID) -> bool:
        db = present(self._db, "bound to the pool at startup")
        return await sql.session_revoked(db, session_id)
