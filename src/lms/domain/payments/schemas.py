"""Bodies of checkout, orders, refunds and the 402 that sends a learner to checkout."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from lms.api.schemas import CamelStruct, Page
from lms.api.text import WORDS_PATTERN

OrderStatus = Literal["PENDING", "PAID", "FAILED", "REFUNDED"]


class Order(CamelStruct, forbid_unknown_fields=True):
    id: uuid.UUID
    course_id: uuid.UUID
    user_id: uuid.UUID
    amount: Annotated[
        str,
        Meta(pattern=r"^\d{1,8}\.\d{2}$", description="the price when ordered", examples=["49.99"]),
    ]
    currency: Annotated[str, Meta(pattern="^[a-z]{3}$", description="ISO 4217, lower case")]
    status: OrderStatus
    provider: Literal["stripe"]
    payment_intent_id: str | None
    client_secret: Annotated[
        str | None,
        Meta(
            description="for Stripe.js to confirm the payment: only to its buyer, "
            "only while PENDING"
        ),
    ]
    flag: Annotated[
        str | None,
        Meta(description="why a payment was not fulfilled (its amount or currency differ); admins"),
    ]
    created_at: datetime
    paid_at: datetime | None
    refunded_at: datetime | None


class OrderPage(Page[Order]):
    """A page of orders, newest first."""

    items: list[Order]


class RefundRequest(CamelStruct, forbid_unknown_fields=True):
    reason: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=2000,
            pattern=WORDS_PATTERN,
            description="why (kept in the audit log)",
        ),
    ]


class PaymentRequiredBody(msgspec.Struct, forbid_unknown_fields=True):
    """402 on enroll: the course is sold; `checkoutPath` is where to buy it."""

    status_code: int
    detail: str
    checkout_path: str = msgspec.field(name="checkoutPath")


class WebhookAck(CamelStruct, forbid_unknown_fields=True):
    received: bool
    outcome: str
