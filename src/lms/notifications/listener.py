"""One dedicated LISTEN connection per process, kept alive, dispatching notifications.

Caches built on it (user auth state, system settings) must know when it is down, because
notifications sent meanwhile are lost: subscribers get `on_down` when the connection goes and
`on_up` when it is back, and treat everything cached across the gap as stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from lms.background import BackgroundTask

log = logging.getLogger("lms.notifications")

HEALTH_CHECK_SECONDS = 5.0
HEALTH_CHECK_TIMEOUT = 2.0
MAX_BACKOFF_SECONDS = 5.0


@dataclass
class Subscriber:
    on_notify: Callable[[str], None]
    on_up: Callable[[], None] = lambda: None
    on_down: Callable[[], None] = lambda: None


@dataclass
class ChangeListener:
    database_url: str
    subscribers: dict[str, list[Subscriber]] = field(default_factory=dict)
    _task: BackgroundTask = field(default_factory=lambda: BackgroundTask("lms-change-listener"))
    _conn: asyncpg.Connection | None = None
    _connected: asyncio.Event = field(default_factory=asyncio.Event)

    def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        self.subscribers.setdefault(channel, []).append(subscriber)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, wait_seconds: float = 5.0) -> None:
        """Start listening; wait a little for the first connection so caches start warm."""
        self._task.start(self._run)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), wait_seconds)

    async def stop(self) -> None:
        await self._task.stop()
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        for subscriber in self.subscribers.get(channel, []):
            try:
                subscriber.on_notify(payload)
            except Exception:
                log.exception("notification handler for %s failed", channel)

    def _set_down(self) -> None:
        if not self._connected.is_set():
            return
        self._connected.clear()
        for subscriber in self._all():
            subscriber.on_down()

    def _all(self) -> list[Subscriber]:
        return [s for subs in self.subscribers.values() for s in subs]

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.database_url, timeout=5)
                self._conn = conn
                # Called the moment asyncpg sees the socket close (a server restart, a terminated
                # backend): subscribers must stop trusting their caches right away.
                conn.add_termination_listener(functools.partial(self._on_termination, lost))
                for channel in self.subscribers:
                    await conn.add_listener(channel, self._dispatch)
                self._connected.set()
                for subscriber in self._all():
                    subscriber.on_up()
                backoff = 0.2
                while not lost.is_set():
                    # A silently dead peer (no FIN) shows only when we use the socket: ping.
                    # asyncio.timeout: 3.11's wait_for can swallow a cancel (background.py).
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(HEALTH_CHECK_SECONDS):
                            await lost.wait()
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), HEALTH_CHECK_TIMEOUT)
                raise ConnectionError("connection closed")
            except asyncio.CancelledError:
                self._set_down()
                raise
            except Exception as exc:
                if self._connected.is_set():
                    log.warning("change listener lost its connection: %s", exc)
                self._set_down()
                await self._close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _on_termination(self, lost: asyncio.Event, _conn: object) -> None:
        self._set_down()
        lost.set()
