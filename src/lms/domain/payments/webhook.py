"""Stripe's webhook: the source of truth on payments. The signature is checked on the raw body
(the SDK's scheme, with its tolerance); each event is recorded by id in the transaction that
acts on it, so a replay, or the same event delivered five times at once, acts once."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import asyncpg
import msgspec

from lms.context import AppContext
from lms.db.queries import orders as sql
from lms.domain.errors import Conflict, Invalid, Unavailable
from lms.domain.payments import settlement
from lms.integrations.stripe_gateway import BadSignature

log = logging.getLogger("lms.payments.webhook")

MAX_BODY_BYTES = 512 * 1024
HANDLED = frozenset(
    {"payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded"}
)


class _Event(msgspec.Struct):
    id: str
    type: str
    data: dict[str, Any]


def _decode(body: bytes) -> tuple[_Event, dict[str, Any]]:
    try:
        event = msgspec.json.decode(body, type=_Event)
    except msgspec.DecodeError:
        raise Invalid("the body is not a Stripe event") from None
    obj = event.data.get("object")
    if not isinstance(obj, dict) or not event.id or len(event.id) > 255 or len(event.type) > 100:
        raise Invalid("the body is not a Stripe event")
    return event, obj


class _Mismatch(Exception):
    def __init__(self, order_id: uuid.UUID, why: str) -> None:
        super().__init__(why)
        self.order_id = order_id
        self.why = why


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


async def _order_of_intent(
    conn: asyncpg.Connection, intent: dict[str, Any]
) -> asyncpg.Record | None:
    """The order the PaymentIntent pays for (its metadata names it), locked."""
    intent_id = str(intent.get("id") or "")
    metadata = intent.get("metadata") or {}
    order_id = _uuid(metadata.get("order_id")) if isinstance(metadata, dict) else None
    order = await sql.by_id(conn, order_id, lock=True) if order_id else None
    if order is None and intent_id:
        order = await sql.by_intent(conn, intent_id, lock=True)
    if order is None:
        return None
    if order["payment_intent_id"] is None and intent_id:
        # Checkout died between creating the intent and naming it: name it now.
        await sql.attach_intent(conn, order["id"], intent_id, None)
    elif order["payment_intent_id"] != intent_id:
        return None  # metadata naming an order some other intent pays for: not this one's
    return order


def _minor(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid("the event's amount is not a whole number of minor units")
    return value


async def handle(db: asyncpg.Pool, ctx: AppContext, body: bytes, signature: str | None) -> str:
    """Verify and act on one delivery; the outcome's name (for the answer and the log)."""
    if ctx.payments is None:
        raise Unavailable("payments are not configured on this server", retry_after=3600)
    if len(body) > MAX_BODY_BYTES:
        raise Invalid("the event is too large")
    try:
        ctx.payments.verify(body, signature)
    except BadSignature as exc:
        log.warning("refused a Stripe delivery: %s", exc)
        raise Invalid("bad or stale Stripe-Signature") from None
    event, obj = _decode(body)
    if event.type not in HANDLED:
        return "ignored"
    async with db.acquire() as conn:
        try:
            async with conn.transaction():
                if not await sql.record_event(conn, event.id, event.type):
                    return "duplicate"
                order, outcome = await _act(conn, ctx, event, obj)
                await sql.settle_event(conn, event.id, order["id"] if order else None, outcome)
        except _Mismatch as exc:
            # Rolled back (the event stays unhandled, so a retry says so again); the order is
            # flagged for an admin in a transaction of its own, and Stripe hears why.
            await sql.flag(conn, exc.order_id, exc.why)
            log.warning("order %s flagged: %s", exc.order_id, exc.why)
            raise Conflict(
                f"the payment does not match its order ({exc.why}): not fulfilled"
            ) from None
    log.info("stripe event %s (%s): %s", event.id, event.type, outcome)
    return outcome


async def _act(
    conn: asyncpg.Connection, ctx: AppContext, event: _Event, obj: dict[str, Any]
) -> tuple[asyncpg.Record | None, str]:
    if event.type == "charge.refunded":
        intent_id = obj.get("payment_intent")
        order = await sql.by_intent(conn, str(intent_id), lock=True) if intent_id else None
        if order is None:
            return None, "unknown_order"
        if not obj.get("refunded"):
            return order, "partial_refund_ignored"  # only a full refund ends access
        row = await settlement.refunded(
            conn, ctx, order["id"], actor_id=None, reason="refunded at Stripe", source="stripe"
        )
        return order, "refunded" if row is not None else "already_settled"
    order = await _order_of_intent(conn, obj)
    if order is None:
        return None, "unknown_order"
    if event.type == "payment_intent.payment_failed":
        error = obj.get("last_payment_error") or {}
        reason = (
            str(error.get("message") or "the payment failed") if isinstance(error, dict) else ""
        )
        return order, await settlement.failed(conn, order["id"], reason or "the payment failed")
    why = settlement.mismatch(order, _minor(obj.get("amount")), str(obj.get("currency") or ""))
    if why is not None:
        raise _Mismatch(order["id"], why)
    return order, await settlement.succeeded(conn, order["id"])
