"""Per-process caches of what every authenticated request checks (the user's role, activity and
token version; whether a login has ended) and of the settings row, kept fresh by PostgreSQL's
NOTIFY as lms keeps its own: lms's triggers announce a change on `lms_user_auth` (the user's id),
`lms_session_revoked` (the login's refresh token family) and `lms_system_settings`. While the
LISTEN connection is up an entry is trusted (a change would have been heard), for at most
MAX_AGE_SECONDS; while it is down nothing is cached. A request with warm caches runs only its
own statements, as lms's do (a heartbeat: one)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

MAX_AGE_SECONDS = 60.0
MAX_ENTRIES = 100_000
CHANNELS = ("lms_user_auth", "lms_session_revoked", "lms_system_settings")


@dataclass(frozen=True, slots=True)
class UserState:
    id: uuid.UUID
    role: str
    is_active: bool
    token_version: int
    loaded_at: float


@dataclass(frozen=True, slots=True)
class WatchRule:
    threshold_percent: float
    required: bool
    loaded_at: float


class Caches:
    def __init__(self) -> None:
        self.users: dict[uuid.UUID, UserState] = {}
        self.logins: dict[uuid.UUID, tuple[bool, float]] = {}  # family -> (ended, loaded at)
        self.rule: WatchRule | None = None
        self.listening = False
        self._task: asyncio.Task[None] | None = None

    def fresh(self, loaded_at: float) -> bool:
        return self.listening and time.monotonic() - loaded_at < MAX_AGE_SECONDS

    def remember(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        if not self.listening:
            return
        if len(table) >= MAX_ENTRIES:
            table.pop(next(iter(table)))
        table[key] = value

    def forget(self) -> None:
        self.users.clear()
        self.logins.clear()
        self.rule = None

    def start(self, dsn: str) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(dsn))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def _heard(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        if channel == "lms_system_settings":
            self.rule = None
            return
        table: dict[uuid.UUID, Any] = self.users if channel == "lms_user_auth" else self.logins
        try:
            table.pop(uuid.UUID(payload), None)
        except ValueError:
            table.clear()

    async def _listen(self, dsn: str) -> None:
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(dsn, timeout=5)

                def on_termination(_conn: object, lost: asyncio.Event = lost) -> None:
                    self.listening = False
                    self.forget()
                    lost.set()

                conn.add_termination_listener(on_termination)
                for channel in CHANNELS:
                    await conn.add_listener(channel, self._heard)
                self.forget()
                self.listening = True
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), 5.0)
                    if not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 2.0)
            except asyncio.CancelledError:
                self.listening = False
                self.forget()
                raise
            except Exception:
                self.listening = False
                self.forget()
                await asyncio.sleep(1.0)


CACHES = Caches()
