"""Runtime settings kept in PostgreSQL (registration open, OTP lifetime and tries, completion
threshold and whether completing needs watching, upload cap), cached in each API process and reloaded on NOTIFY `lms_system_settings`;
while the LISTEN connection is down the cache is re-read at most every few seconds instead."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from lms.db.queries import system_settings as sql

log = logging.getLogger("lms.settings")

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
        self._value: RuntimeSettings | None = None
        self._loaded_at = 0.0
        self._listening = False
        self._reloads: set[asyncio.Task[None]] = set()

    async def get(self) -> RuntimeSettings:
        fresh = self._listening or time.monotonic() - self._loaded_at < STALE_AFTER_SECONDS
        if self._value is None or not fresh:
            await self.reload()
        assert self._value is not None
        return self._value

    async def reload(self) -> None:
        # Through Piccolo's engine, which runs on the app's pool: nothing to bind at startup.
        self.store(RuntimeSettings.from_row(await sql.read()))

    def store(self, value: RuntimeSettings) -> None:
        self._value, self._loaded_at = value, time.monotonic()

    def _reload_soon(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_logged())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception as exc:  # the next get() retries
            self._value = None
            log.warning("could not reload system settings: %s", exc)

    def on_notify(self, _payload: str) -> None:
        self._reload_soon()

    def on_listening(self) -> None:
        self._listening = True
        self._reload_soon()  # anything changed while we were not listening

    def on_not_listening(self) -> None:
        self._listening = False
