"""What a payment's outcome does to its order, in the caller's transaction: the webhook and the
reconciler both settle orders through these, so a late webhook after the reconciler (or the
reverse) finds the order settled and changes nothing.

A refund ends access: the enrollment is deleted (its lesson progress with it) and a certificate
it earned is revoked (it stays verifiable, as REVOKED, with the reason); buying the course again
starts a fresh enrollment. Another PAID order of the same learner for the course keeps access.
"""

from __future__ import annotations

import uuid

import asyncpg

from lms.db.queries import orders as sql
from lms.domain import audit
from lms.integrations.stripe_gateway import to_minor_units

REFUND_REASON = "the order was refunded"


def mismatch(order: asyncpg.Record, amount: int, currency: str) -> str | None:
    """Why a payment of `amount` (minor units) in `currency` cannot fulfil `order`, or None."""
    expected = to_minor_units(order["amount"])
    if currency.lower() != order["currency"]:
        return f"paid in {currency.lower()!r}, the order is in {order['currency']!r}"
    if amount != expected:
        return f"paid {amount} minor units, the order is for {expected}"
    return None


async def succeeded(conn: asyncpg.Connection, order_id: uuid.UUID) -> str:
    """PENDING/FAILED -> PAID and the enrollment, once; the outcome's name. The caller holds the
    order's row lock and has checked amount and currency."""
    row = await sql.mark_paid(conn, order_id)
    if row is None:
        return "already_settled"
    await sql.grant_enrollment(conn, row["user_id"], row["course_id"])
    return "paid"


async def failed(conn: asyncpg.Connection, order_id: uuid.UUID, reason: str) -> str:
    row = await sql.mark_failed(conn, order_id, reason)
    return "failed" if row is not None else "already_settled"


async def refunded(
    conn: asyncpg.Connection,
    order_id: uuid.UUID,
    *,
    actor_id: uuid.UUID | None,
    reason: str,
    source: str,
) -> asyncpg.Record | None:
    """PAID -> REFUNDED, access ended, audited; the order, or None when it was not PAID."""
    row = await sql.mark_refunded(conn, order_id)
    if row is None:
        return None
    ended = await sql.end_access(conn, row["user_id"], row["course_id"], REFUND_REASON)
    await audit.record(
        conn,
        actor_id=actor_id,
        action="order.refund",
        target_type="order",
        target_id=order_id,
        before={"status": "PAID"},
        after={
            "status": "REFUNDED",
            "reason": reason,
            "source": source,
            "enrollmentEnded": bool(ended),
        },
    )
    return row
