"""Checkout (an order and its PaymentIntent), the orders lists, and admin refunds."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import asyncpg

from lms.context import AppContext
from lms.db.queries import orders as sql
from lms.db.tables import CourseStatus
from lms.domain.auth.authentication import Principal
from lms.domain.errors import Conflict, Invalid, NotFound, Unavailable, UpstreamFailed
from lms.domain.paging import after_position, time_id_page
from lms.domain.payments import settlement
from lms.domain.payments.schemas import Order, OrderPage
from lms.integrations.stripe_gateway import GatewayError, PaymentIntent, StripeGateway

log = logging.getLogger("lms.payments")

# Stripe's own ceiling for one charge is 999,999.99 in most currencies; a course dearer than
# this is a typo, and refused at checkout rather than at Stripe.
MAX_CHARGE = Decimal("999999.99")
ORDER_STATUSES = ("PENDING", "PAID", "FAILED", "REFUNDED")


def to_order(row: asyncpg.Record, viewer: uuid.UUID | None = None) -> Order:
    """The wire Order; the client secret only to its buyer, only while PENDING."""
    show_secret = viewer is not None and viewer == row["user_id"] and row["status"] == "PENDING"
    return Order(
        id=row["id"],
        course_id=row["course_id"],
        user_id=row["user_id"],
        amount=f"{row['amount']:.2f}",
        currency=row["currency"],
        status=row["status"],
        provider=row["provider"],
        payment_intent_id=row["payment_intent_id"],
        client_secret=row["client_secret"] if show_secret else None,
        flag=row["flag"],
        created_at=row["created_at"],
        paid_at=row["paid_at"],
        refunded_at=row["refunded_at"],
    )


def gateway(ctx: AppContext) -> StripeGateway:
    if ctx.payments is None:
        raise Unavailable(
            "payments are not configured on this server (LMS_STRIPE_SECRET_KEY and "
            "LMS_STRIPE_WEBHOOK_SECRET)",
            retry_after=3600,
        )
    return ctx.payments


async def checkout(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, course_id: uuid.UUID
) -> tuple[Order, bool]:
    """(the order with its client secret, whether it is new). One PENDING order per learner and
    course: a second checkout while it is PENDING gets the same order."""
    stripe = gateway(ctx)
    currency = ctx.settings.currency
    async with db.acquire() as conn, conn.transaction():
        course = await sql.course_for_checkout(conn, course_id)
        if course is None or course["status"] != CourseStatus.PUBLISHED:
            raise NotFound("no such course")
        price: Decimal = course["price"]
        if price <= 0:
            raise Conflict("the course is free: enroll instead (POST /courses/:id/enroll)")
        if price > MAX_CHARGE:
            raise Invalid(f"the course's price is above {MAX_CHARGE}: it cannot be charged")
        if await sql.is_enrolled(conn, principal.user_id, course_id):
            raise Conflict("you are enrolled in this course already")
        row = await sql.insert_pending(conn, principal.user_id, course_id, price, currency)
        created = row is not None
        if row is None:
            row = await sql.pending_of(conn, principal.user_id, course_id)
    if row is None:  # the PENDING order was settled between the two statements
        raise Conflict("your order for this course was settled a moment ago: see GET /orders")
    if row["payment_intent_id"] is None:
        # No connection held while Stripe answers.
        intent = await _create_intent(stripe, row)
        named = await sql.attach_intent(db, row["id"], intent.id, intent.client_secret)
        # A concurrent checkout of the same order named it first (the same intent at Stripe,
        # by the idempotency key): read what it wrote.
        row = named or await sql.by_id(db, row["id"])
        if row is None:
            raise NotFound("no such order")
    return to_order(row, principal.user_id), created


async def _create_intent(stripe: StripeGateway, row: asyncpg.Record) -> PaymentIntent:
    try:
        return await stripe.create_payment_intent(
            row["id"],
            row["amount"],
            row["currency"],
            {
                "order_id": str(row["id"]),
                "course_id": str(row["course_id"]),
                "user_id": str(row["user_id"]),
            },
        )
    except GatewayError as exc:
        # The order stays PENDING without an intent: checking out again retries with the same
        # idempotency key; the reconciler fails it if nobody does.
        log.warning("checkout: %s", exc)
        raise UpstreamFailed("the payment provider did not answer; try again") from None


async def mine(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, cursor: str | None, limit: int
) -> OrderPage:
    after = after_position(ctx.secret, "orders.mine", cursor)
    rows = await sql.page(
        db, user_id=principal.user_id, course_id=None, status=None, after=after, limit=limit + 1
    )
    return time_id_page(
        rows,
        limit,
        page=OrderPage,
        convert=lambda r: to_order(r, principal.user_id),
        secret=ctx.secret,
        scope="orders.mine",
    )


async def all_orders(
    db: asyncpg.Pool,
    ctx: AppContext,
    *,
    status: str | None,
    course_id: uuid.UUID | None,
    cursor: str | None,
    limit: int,
) -> OrderPage:
    if status is not None and status not in ORDER_STATUSES:
        raise Invalid(f"status must be one of {', '.join(ORDER_STATUSES)}")
    after = after_position(ctx.secret, "orders.all", cursor)
    rows = await sql.page(
        db, user_id=None, course_id=course_id, status=status, after=after, limit=limit + 1
    )
    return time_id_page(
        rows,
        limit,
        page=OrderPage,
        convert=to_order,
        secret=ctx.secret,
        scope="orders.all",
    )


async def refund(
    db: asyncpg.Pool, ctx: AppContext, admin: Principal, order_id: uuid.UUID, reason: str
) -> Order:
    """Refund a PAID order through Stripe, then end access (audited). Stripe first: the refund is
    keyed by the order, so a retry after a failure here refunds once; refunding a REFUNDED order
    again answers it as it is."""
    reason = reason.strip()
    if not reason:
        raise Invalid("reason must not be blank: say why the order is refunded")
    stripe = gateway(ctx)
    order = await sql.by_id(db, order_id)
    if order is None:
        raise NotFound("no such order")
    if order["status"] == "REFUNDED":
        return to_order(order)
    if order["status"] != "PAID" or order["payment_intent_id"] is None:
        raise Conflict(f"the order is {order['status']}: only a PAID order can be refunded")
    try:
        await stripe.refund(order["payment_intent_id"], order_id)
    except GatewayError as exc:
        log.warning("refund of order %s: %s", order_id, exc)
        raise UpstreamFailed("the payment provider refused or did not answer; try again") from None
    async with db.acquire() as conn, conn.transaction():
        await sql.by_id(conn, order_id, lock=True)
        row = await settlement.refunded(
            conn, ctx, order_id, actor_id=admin.user_id, reason=reason, source="admin"
        )
        if row is None:  # a charge.refunded webhook settled it meanwhile
            row = await sql.by_id(conn, order_id)
    if row is None:
        raise NotFound("no such order")
    return to_order(row)
