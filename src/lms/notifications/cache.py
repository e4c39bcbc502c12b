"""A per-process cache of rows that PostgreSQL announces changes to with NOTIFY.

An entry is trusted while the LISTEN connection is up, because a change would have been heard
and dropped it; a backstop age bounds even that (a notification missed unseen on a half-dead
connection between two health checks). While the connection is down, changes go unheard: entries
are dropped and live only `max_age_unheard` (0: every read goes to the database).

Concurrent misses for one key share one load, so a change does not send every request in flight
to the database at once; a load that began before an invalidation is neither joined nor stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from lms.notifications.listener import Subscriber

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    loaded_at: float


class NotifiedCache(Generic[K, V]):
    def __init__(
        self,
        load: Callable[[K], Awaitable[V | None]],
        *,
        key_of: Callable[[str], K | None],
        max_age: float,
        max_age_unheard: float,
        max_entries: int,
    ) -> None:
        """`load` reads a key's value (None: there is none, which is not cached); `key_of` turns
        a notification's payload into the key it invalidates (None: every key)."""
        self._load = load
        self._key_of = key_of
        self._max_age = max_age
        self._max_age_unheard = max_age_unheard
        self._max_entries = max_entries
        self._entries: dict[K, _Entry[V]] = {}
        self._loads: dict[K, tuple[int, asyncio.Task[V | None]]] = {}
        self._listening = False
        # Bumped by every invalidation: a load that raced one must not store what it read.
        self._epoch = 0

    async def get(self, key: K) -> V | None:
        hit = self._entries.get(key)
        max_age = self._max_age if self._listening else self._max_age_unheard
        if hit is not None and time.monotonic() - hit.loaded_at < max_age:
            return hit.value
        epoch = self._epoch
        current = self._loads.get(key)
        if current is None or current[0] != epoch:
            task = asyncio.get_running_loop().create_task(self._load_and_store(key, epoch))
            # Read the outcome even if every caller went away, so a failure is not reported
            # as "never retrieved"; each caller still gets it from its own await.
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            current = self._loads[key] = (epoch, task)
        # Shielded: a caller that goes away (a client disconnect) does not cancel the others' load.
        return await asyncio.shield(current[1])

    async def _load_and_store(self, key: K, epoch: int) -> V | None:
        try:
            value = await self._load(key)
        finally:
            if self._loads.get(key, (None,))[0] == epoch:
                del self._loads[key]
        if value is not None and epoch == self._epoch:
            self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        """Store a value this process has just written (it reads its own writes at once)."""
        self._entries.pop(key, None)  # re-inserted last: the dict stays oldest-first
        if len(self._entries) >= self._max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = _Entry(value, time.monotonic())

    def invalidate(self, key: K) -> None:
        self._epoch += 1
        self._entries.pop(key, None)

    def invalidate_all(self) -> None:
        self._epoch += 1
        self._entries.clear()

    def subscriber(self) -> Subscriber:
        """What the change listener calls: on a notification, on connecting, on losing it."""
        return Subscriber(self._on_notify, self._on_up, self._on_down)

    def _on_notify(self, payload: str) -> None:
        key = self._key_of(payload)
        if key is None:
            self.invalidate_all()
        else:
            self.invalidate(key)

    def _on_up(self) -> None:
        self.invalidate_all()  # anything may have changed while nobody was listening
        self._listening = True

    def _on_down(self) -> None:
        self._listening = False
        self.invalidate_all()
