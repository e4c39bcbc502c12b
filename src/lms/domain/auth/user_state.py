"""Per-process cache of each user's role, activity and token version, so authenticating a request
costs no database round trip, yet a role change or deactivation applies on the next request.

Entries are dropped when PostgreSQL NOTIFYs `lms_user_auth` with the user's id (a trigger fires on
every change to those columns, whoever makes it). While the LISTEN connection is down,
notifications can be missed, so nothing is cached and every request reads the row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from lms.db.queries import users as sql
from lms.invariants import present
from lms.notifications.cache import NotifiedCache
from lms.notifications.listener import Subscriber

CHANNEL = "lms_user_auth"
MAX_ENTRIES = 100_000
# A backstop: should a notification ever be missed unseen, no entry outlives this.
MAX_AGE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class UserAuthState:
    role: str
    is_active: bool
    token_version: int


def _user_id(payload: str) -> uuid.UUID | None:
    """The id a notification names; anything else drops every entry."""
    try:
        return uuid.UUID(payload)
    except ValueError:
        return None


class UserAuthCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._db: asyncpg.Pool | None = None
        self._cache = NotifiedCache[uuid.UUID, UserAuthState](
            self._load,
            key_of=_user_id,
            max_age=MAX_AGE_SECONDS,
            max_age_unheard=0.0,
            max_entries=max_entries,
        )

    def bind(self, db: asyncpg.Pool) -> None:
        """The pool to read users from, once the app has started it."""
        self._db = db

    async def get(self, user_id: uuid.UUID) -> UserAuthState | None:
        return await self._cache.get(user_id)

    def invalidate(self, user_id: uuid.UUID) -> None:
        """After this process changed the user: do not wait for the notification."""
        self._cache.invalidate(user_id)

    def subscriber(self) -> Subscriber:
        return self._cache.subscriber()

    async def _load(self, user_id: uuid.UUID) -> UserAuthState | None:
        row = await sql.auth_state(present(self._db, "bound to the pool at startup"), user_id)
        if row is None:
            return None
        return UserAuthState(row["role"], row["is_active"], row["token_version"])
