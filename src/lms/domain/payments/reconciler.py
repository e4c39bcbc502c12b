"""The reconciler: orders PENDING for longer than a webhook takes are looked up at Stripe and
settled as the webhook would have (a webhook that never arrives loses no sale). It runs in the
housekeeping loop of every API process, one process at a time (a transaction-scoped advisory lock
that the others skip rather than wait for)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from lms.db.queries import orders as sql
from lms.domain.payments import settlement
from lms.integrations.stripe_gateway import GatewayError, StripeGateway, UnknownIntent

log = logging.getLogger("lms.payments.reconciler")

RECONCILE_AFTER_SECONDS = 300  # a webhook comes within seconds; five minutes means it will not
ABANDON_AFTER_SECONDS = 86400  # an order nobody paid for in a day is given up (intent cancelled)
BATCH = 100
_LOCK_KEY = "lms.payments.reconciler"


@dataclass
class Tally:
    checked: int = 0
    paid: int = 0
    failed: int = 0
    flagged: int = 0
    skipped_locked: bool = False


async def reconcile_once(
    db: asyncpg.Pool, stripe: StripeGateway, *, older_than: int = RECONCILE_AFTER_SECONDS
) -> Tally:
    tally = Tally()
    # A transaction-scoped lock on a connection of its own, held for the pass: released at its
    # end whatever happens (pooled connections keep no session locks: lms.db.engine).
    async with db.acquire() as lock_conn, lock_conn.transaction():
        got = await lock_conn.fetchval(
            "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))", _LOCK_KEY
        )
        if not got:
            tally.skipped_locked = True
            return tally
        for order in await sql.stale_pending(db, older_than, BATCH):
            tally.checked += 1
            try:
                outcome = await _settle(db, stripe, order)
            except GatewayError as exc:
                log.warning("reconciler: order %s: %s", order["id"], exc)
                continue
            if outcome == "paid":
                tally.paid += 1
            elif outcome == "failed":
                tally.failed += 1
            elif outcome == "flagged":
                tally.flagged += 1
    if tally.checked:
        log.info("reconciled pending orders", extra=tally.__dict__)
    return tally


async def _settle(db: asyncpg.Pool, stripe: StripeGateway, order: asyncpg.Record) -> str:
    age = await db.fetchval(
        "SELECT extract(epoch FROM now() - $1::timestamptz)", order["created_at"]
    )
    abandoned = age is not None and float(age) > ABANDON_AFTER_SECONDS
    intent_id = order["payment_intent_id"]
    if intent_id is None:
        if abandoned:
            return await _in_tx(db, order, "fail", "checkout never reached the payment provider")
        await sql.mark_checked(db, order["id"])
        return "waiting"
    try:
        intent = await stripe.payment_intent(intent_id)  # no connection held meanwhile
    except UnknownIntent:
        return await _in_tx(db, order, "fail", "the payment provider does not know its payment")
    if intent.status == "succeeded":
        why = settlement.mismatch(order, intent.amount, intent.currency)
        if why is not None:
            await sql.flag(db, order["id"], why)
            return "flagged"
        return await _in_tx(db, order, "pay", "")
    if intent.status == "canceled":
        return await _in_tx(db, order, "fail", "the payment was cancelled")
    if intent.status == "requires_payment_method" and intent.failure:
        return await _in_tx(db, order, "fail", intent.failure)
    if abandoned and intent.status != "processing":
        await stripe.cancel_payment_intent(intent_id)
        return await _in_tx(db, order, "fail", "not paid within a day; the payment was cancelled")
    await sql.mark_checked(db, order["id"])
    return "waiting"


async def _in_tx(db: asyncpg.Pool, order: asyncpg.Record, action: str, reason: str) -> str:
    async with db.acquire() as conn, conn.transaction():
        await sql.by_id(conn, order["id"], lock=True)
        await sql.mark_checked(conn, order["id"])
        if action == "pay":
            return await settlement.succeeded(conn, order["id"])
        return await settlement.failed(conn, order["id"], reason)
