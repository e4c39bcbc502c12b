"""What a payment's outcome does to its order, in the caller's transaction: the webhook and the
reconciler both settle orders through these, so a late webhook after the reconciler (or the
reverse) finds the order settled and changes nothing.

A refund ends access: the enrollment is deleted (its lesson progress with it) and a certificate
it earned is revoked (it stays verifiable, as REVOKED, with the reason); buying the course again
starts a fresh enrollment. Another PAID order of the same learner for the course keeps access.

Each change writes its events (lms.domain.events.log) on the same connection, in the same
transaction: order.paid with enrollment.created (only for an enrollment really created), and
order.refunded with certificate.revoked for a certificate the refund revokes. The webhook
records the Stripe event id in that transaction too, so a replay writes nothing twice.
"""

from __future__ import annotations

import uuid

import asyncpg

from lms.context import AppContext
from lms.db.queries import orders as sql
from lms.domain import audit
from lms.domain.certificates.services import certificate_event
from lms.domain.events.log import record_event
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
    await record_event(conn, "order.paid", _order_data(row) | {"paidAt": row["paid_at"]})
    await sql.grant_enrollment(conn, row["user_id"], row["course_id"])  # + enrollment.created
    return "paid"


def _order_data(row: asyncpg.Record) -> dict[str, object]:
    """What order.* events tell integrators: ids, the amount as on the wire (a decimal string)."""
    return {
        "orderId": row["id"],
        "userId": row["user_id"],
        "courseId": row["course_id"],
        "amount": f"{row['amount']:.2f}",
        "currency": row["currency"],
        "paymentIntentId": row["payment_intent_id"],
    }


async def failed(conn: asyncpg.Connection, order_id: uuid.UUID, reason: str) -> str:
    row = await sql.mark_failed(conn, order_id, reason)
    return "failed" if row is not None else "already_settled"


async def refunded(
    conn: asyncpg.Connection,
    ctx: AppContext,
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
    ended, revoked = await sql.end_access(conn, row["user_id"], row["course_id"], REFUND_REASON)
    data = _order_data(row)
    del data["paymentIntentId"]
    await record_event(
        conn,
        "order.refunded",
        data | {"refundedAt": row["refunded_at"], "enrollmentEnded": bool(ended)},
    )
    for certificate in revoked:
        await record_event(
            conn,
            "certificate.revoked",
            certificate_event(ctx, certificate)
            | {"reason": certificate["revoked_reason"], "revokedAt": certificate["revoked_at"]},
        )
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
