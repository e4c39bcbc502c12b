"""Delivers queued messages: woken by NOTIFY when one is queued, polling as a fallback, retrying
with exponential backoff when the provider is down, giving up only when a message has expired
(an OTP past its lifetime) or run out of attempts."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from lms.background import BackgroundTask
from lms.db.queries import outbox as sql
from lms.db.tables import MessageChannel
from lms.integrations.mail import Email, Mailer, PermanentDeliveryError
from lms.integrations.sms import Sms, SmsSender
from lms.observability.logs import request_id_var
from lms.observability.metrics import OUTBOUND_MESSAGES

log = logging.getLogger("lms.outbox")

BATCH = 20
LEASE_SECONDS = 60  # a dispatcher that dies mid-send frees its messages after this
POLL_SECONDS = 5.0
MAX_ATTEMPTS = 12
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0


def masked_recipient(channel: str, recipient: str) -> str:
    """A recipient as logs may show it: the mail domain, or the number's last two digits (logs
    are read by more people than the users table, and kept longer)."""
    if channel == MessageChannel.EMAIL.value:
        return "…@" + recipient.rpartition("@")[2]
    return "…" + recipient[-2:]


def _masked(row: asyncpg.Record) -> str:
    return masked_recipient(row["channel"], row["recipient"])


def retry_delay(attempts: int) -> float:
    return float(min(RETRY_BASE_SECONDS * 2 ** (attempts - 1), RETRY_MAX_SECONDS))


class OutboxDispatcher:
    def __init__(self, pool: asyncpg.Pool, mailer: Mailer, sms: SmsSender) -> None:
        self.pool = pool
        self.mailer = mailer
        self.sms = sms
        self._wake = asyncio.Event()
        self._task = BackgroundTask("lms-outbox")

    def wake(self, _payload: str = "") -> None:
        self._wake.set()

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()
        await self.sms.close()

    async def _run(self) -> None:
        while True:
            try:
                delivered = await self.deliver_due()
                if delivered:
                    continue  # there may be more
                wait = await sql.seconds_until_next_due(self.pool)
                timeout = POLL_SECONDS if wait is None else min(max(wait, 0.05), POLL_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down: keep trying, nothing is lost
                log.warning("outbox dispatch failed: %s", exc)
                timeout = POLL_SECONDS
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that comes as the
            # wake-up does (a NOTIFY at shutdown), and the loop would go round again.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()

    async def deliver_due(self) -> int:
        """Claim and send one batch; the number of messages claimed."""
        rows = await sql.claim_due(self.pool, limit=BATCH, lease_seconds=LEASE_SECONDS)
        if rows:
            await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _deliver(self, row: asyncpg.Record) -> None:
        token = request_id_var.set(row["request_id"])
        try:
            channel = row["channel"]
            if row["expired"]:
                await sql.mark_failed(self.pool, row["id"], "expired before it could be delivered")
                OUTBOUND_MESSAGES.labels(channel, "failed").inc()
                log.warning("outbox: %s to %s expired undelivered", row["purpose"], _masked(row))
                return
            try:
                await self._send(row)
            except PermanentDeliveryError as exc:
                await sql.mark_failed(self.pool, row["id"], str(exc))
                OUTBOUND_MESSAGES.labels(channel, "failed").inc()
                log.error("outbox: %s to %s refused: %s", row["purpose"], _masked(row), exc)
                return
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                if row["attempts"] >= MAX_ATTEMPTS:
                    await sql.mark_failed(self.pool, row["id"], reason)
                    OUTBOUND_MESSAGES.labels(channel, "failed").inc()
                    log.error(
                        "outbox: %s to %s failed for good: %s",
                        row["purpose"],
                        _masked(row),
                        reason,
                    )
                else:
                    delay = retry_delay(row["attempts"])
                    await sql.mark_retry(self.pool, row["id"], reason, delay)
                    OUTBOUND_MESSAGES.labels(channel, "retry").inc()
                    log.warning(
                        "outbox: %s to %s failed (attempt %d), retrying in %.0fs: %s",
                        row["purpose"],
                        _masked(row),
                        row["attempts"],
                        delay,
                        reason,
                    )
                return
            await sql.mark_sent(self.pool, row["id"])
            OUTBOUND_MESSAGES.labels(channel, "sent").inc()
            log.info("outbox: %s sent to %s", row["purpose"], _masked(row))
        finally:
            request_id_var.reset(token)

    async def _send(self, row: asyncpg.Record) -> None:
        if row["channel"] == MessageChannel.EMAIL.value:
            email = Email(row["recipient"], row["subject"], row["body_text"], row["body_html"])
            await self.mailer.send(email)
        else:
            await self.sms.send(Sms(row["recipient"], row["body_text"]))
