"""Periodic clean-up in each API process: rows whose only purpose has expired (rate-limit windows,
spent codes, dead refresh tokens, delivered messages, delivered webhooks and old events; the
xAPI queue needs none: a statement leaves it when the LRS takes it). Every statement is
idempotent, so several processes running it at once do no harm. With payments configured, the
same loop reconciles PENDING orders with Stripe every RECONCILE_INTERVAL_SECONDS, one process at
a time (its own advisory lock: lms.domain.payments.reconciler)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from lms.background import BackgroundTask
from lms.db.queries import events, otp_codes, outbox, rate_limits, refresh_tokens
from lms.domain.rate_limits import WINDOW_LONGEST_SECONDS

log = logging.getLogger("lms.housekeeping")

INTERVAL_SECONDS = 600
RECONCILE_INTERVAL_SECONDS = 60
DAY = 86400

Reconcile = Callable[[], Awaitable[object]]


async def sweep_once(db: asyncpg.Pool) -> None:
    await rate_limits.purge(db, WINDOW_LONGEST_SECONDS)
    await otp_codes.purge_old(db, DAY)
    await refresh_tokens.purge_expired(7 * DAY)  # Piccolo's engine: on the same pool
    await outbox.purge_settled(db, 30 * DAY)
    await events.purge_old(db, events.LOG_KEEPS_SECONDS)


async def run_forever(db: asyncpg.Pool, reconcile: Reconcile | None = None) -> None:
    tick = RECONCILE_INTERVAL_SECONDS if reconcile is not None else INTERVAL_SECONDS
    last_sweep = time.monotonic()
    while True:
        await asyncio.sleep(tick)
        if reconcile is not None:
            try:
                await reconcile()
            except Exception as exc:
                log.warning("order reconciliation failed (will retry): %s", exc)
        if time.monotonic() - last_sweep < INTERVAL_SECONDS - 1:
            continue
        last_sweep = time.monotonic()
        try:
            await sweep_once(db)
        except Exception as exc:
            log.warning("housekeeping failed (will retry): %s", exc)


class Housekeeper:
    def __init__(self) -> None:
        self._task = BackgroundTask("lms-housekeeping")

    def start(self, db: asyncpg.Pool, reconcile: Reconcile | None = None) -> None:
        self._task.start(lambda: run_forever(db, reconcile))

    async def stop(self) -> None:
        await self._task.stop()
