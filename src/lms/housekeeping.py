"""Periodic clean-up in each API process: rows whose only purpose has expired (rate-limit windows,
spent codes, dead refresh tokens, delivered messages, delivered webhooks and old events). Every
statement is idempotent, so several processes running it at once do no harm."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from lms.background import BackgroundTask
from lms.db.queries import events, otp_codes, outbox, rate_limits, refresh_tokens
from lms.domain.rate_limits import WINDOW_LONGEST_SECONDS

log = logging.getLogger("lms.housekeeping")

INTERVAL_SECONDS = 600
DAY = 86400


async def sweep_once(db: asyncpg.Pool) -> None:
    await rate_limits.purge(db, WINDOW_LONGEST_SECONDS)
    await otp_codes.purge_old(db, DAY)
    await refresh_tokens.purge_expired(7 * DAY)  # Piccolo's engine: on the same pool
    await outbox.purge_settled(db, 30 * DAY)
    await events.purge_old(db, 30 * DAY)


async def run_forever(db: asyncpg.Pool) -> None:
    while True:
        await asyncio.sleep(INTERVAL_SECONDS)
        try:
            await sweep_once(db)
        except Exception as exc:
            log.warning("housekeeping failed (will retry): %s", exc)


class Housekeeper:
    def __init__(self) -> None:
        self._task = BackgroundTask("lms-housekeeping")

    def start(self, db: asyncpg.Pool) -> None:
        self._task.start(lambda: run_forever(db))

    async def stop(self) -> None:
        await self._task.stop()
