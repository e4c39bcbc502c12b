"""Per-process cache of each user's role, activity and token version, so authenticating a request
costs no database round trip, yet a role change or deactivation applies on the next request.

Entries are dropped when PostgreSQL NOTIFYs `lms_user_auth` (a trigger fires on every change to
those columns, whoever makes it). While the LISTEN connection is down, notifications can be
missed, so the cache is bypassed and every request reads the row.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import asyncpg

from lms.db.queries import users as sql

CHANNEL = "lms_user_auth"
MAX_ENTRIES = 100_000
# A backstop: should a notification ever be missed unseen (a half-dead connection between two
# health checks), no entry outlives this.
MAX_AGE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class UserAuthState:
    role: str
    is_active: bool
    token_version: int
    loaded_at: float = 0.0


class UserAuthCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: dict[uuid.UUID, UserAuthState] = {}
        self._max_entries = max_entries
        self._trusted = False
        # Bumped by every invalidation: a read that raced one must not store what it read.
        self._epoch = 0
        self._db: asyncpg.Pool | None = None

    def bind(self, db: asyncpg.Pool) -> None:
        """The pool to read users from, once the app has started it."""
        self._db = db

    async def get(self, user_id: uuid.UUID) -> UserAuthState | None:
        if self._trusted:
            hit = self._entries.get(user_id)
            if hit is not None and time.monotonic() - hit.loaded_at < MAX_AGE_SECONDS:
                return hit
        epoch = self._epoch
        assert self._db is not None, "bound to the pool at startup"
        row = await sql.auth_state(self._db, user_id)
        if row is None:
            return None
        state = UserAuthState(row["role"], row["is_active"], row["token_version"], time.monotonic())
        if self._trusted and epoch == self._epoch:
            self._entries.pop(user_id, None)  # re-inserted last: the dict stays oldest-first
            if len(self._entries) >= self._max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[user_id] = state
        return state

    def invalidate(self, user_id: uuid.UUID | str) -> None:
        self._epoch += 1
        try:
            key = user_id if isinstance(user_id, uuid.UUID) else uuid.UUID(user_id)
        except ValueError:
            return
        self._entries.pop(key, None)

    def on_listening(self) -> None:
        self._epoch += 1
        self._entries.clear()
        self._trusted = True

    def on_not_listening(self) -> None:
        self._trusted = False
        self._epoch += 1
        self._entries.clear()
