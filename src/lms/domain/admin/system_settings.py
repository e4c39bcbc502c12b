"""Runtime settings kept in PostgreSQL (registration open, OTP lifetime and tries, completion
threshold and whether completing needs watching, upload cap), cached in each API process until
NOTIFY `lms_system_settings` says they changed; while the LISTEN connection is down they are
re-read at most every few seconds instead."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from lms.db.queries import system_settings as sql
from lms.invariants import present
from lms.notifications.cache import NotifiedCache
from lms.notifications.listener import Subscriber

CHANNEL = "lms_system_settings"
STALE_AFTER_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    registration_open: bool
    otp_ttl_seconds: int
    otp_max_attempts: int
    completion_threshold_percent: Decimal
    require_watch_to_complete: bool
    max_upload_bytes: int
    updated_at: datetime | None
    updated_by: uuid.UUID | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RuntimeSettings:
        return cls(
            registration_open=row["registration_open"],
            otp_ttl_seconds=row["otp_ttl_seconds"],
            otp_max_attempts=row["otp_max_attempts"],
            completion_threshold_percent=row["completion_threshold_percent"],
            require_watch_to_complete=row["require_watch_to_complete"],
            max_upload_bytes=row["max_upload_bytes"],
            updated_at=row["updated_at"],
            updated_by=row["updated_by_id"],
        )


class SystemSettingsCache:
    def __init__(self) -> None:
        self._cache = NotifiedCache[None, RuntimeSettings](
            self._load,
            key_of=lambda _payload: None,
            max_age=math.inf,
            max_age_unheard=STALE_AFTER_SECONDS,
            max_entries=1,
        )

    async def get(self) -> RuntimeSettings:
        value = await self._cache.get(None)
        return present(value, "the settings row always exists (a migration creates it)")

    async def reload(self) -> RuntimeSettings:
        """Read the row again now (after a change made behind the API's back, as tests do)."""
        self._cache.invalidate(None)
        return await self.get()

    def store(self, value: RuntimeSettings) -> None:
        """After this process changed the settings: serve them at once."""
        self._cache.put(None, value)

    def subscriber(self) -> Subscriber:
        return self._cache.subscriber()

    @staticmethod
    async def _load(_key: None) -> RuntimeSettings:
        # Through Piccolo's engine, which runs on the app's pool: nothing to bind at startup.
        return RuntimeSettings.from_row(await sql.read())
