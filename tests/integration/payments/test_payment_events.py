"""Payments write their events (order.paid, enrollment.created, order.refunded, certificate.revoked)
in the transaction that settles the order: once, whatever Stripe redelivers, none for a declined
card, and an order.paid reaches a registered webhook endpoint."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from lms.domain.payments.reconciler import reconcile_once
from lms.settings import Settings
from tests.conftest import TestUser
from tests.helpers import eventually
from tests.integration.events.test_webhooks import delivering, register
from tests.integration.payments.test_payments import (
    DECLINED_CARD,
    PRICE,
    bought,
    checkout,
    deliver,
    order_row,
    pay,
    priced_course,
    signed,
    wait_for_status,
)
from tests.support.localstripe import LocalStripe, WebhookRelay
from tests.support.webhook_receiver import WebhookReceiver


async def events_of(db: asyncpg.Pool, *types: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT id, type, data FROM events WHERE type = ANY($1::text[]) ORDER BY seq", list(types)
    )
    return [{"id": r["id"], "type": r["type"], **r["data"]} for r in rows]


def purchases(events: list[dict[str, Any]], course_id: str | None = None) -> list[dict[str, Any]]:
    """The order.paid and purchase enrollment.created events (of one course, when given)."""
    return [
        e
        for e in events
        if (e["type"] == "order.paid" or e.get("source") == "purchase")
        and course_id in (None, e["courseId"])
    ]


async def assert_paid_once(
    db: asyncpg.Pool, order: dict[str, Any], learner: TestUser, course_id: str
) -> None:
    """Exactly one order.paid and one enrollment.created (source purchase), with their data."""
    events = purchases(await events_of(db, "order.paid", "enrollment.created"), course_id)
    assert [e["type"] for e in events] == ["order.paid", "enrollment.created"], events
    paid, enrolled = events
    row = await order_row(db, order["id"])
    assert paid["orderId"] == order["id"]
    assert paid["userId"] == str(learner.id) and paid["courseId"] == course_id
    assert paid["amount"] == PRICE and paid["currency"] == "usd"
    assert paid["paymentIntentId"] == order["paymentIntentId"]
    assert datetime.fromisoformat(paid["paidAt"]) == row["paid_at"]
    enrollment = await db.fetchrow(
        "SELECT id, enrolled_at FROM enrollments WHERE user_id = $1 AND course_id = $2",
        learner.id,
        uuid.UUID(course_id),
    )
    assert enrolled["enrollmentId"] == str(enrollment["id"])
    assert enrolled["userId"] == str(learner.id) and enrolled["courseId"] == course_id
    assert enrolled["source"] == "purchase" and enrolled["enrolledAt"]


async def test_duplicate_deliveries_write_order_paid_and_enrollment_created_once(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    course = await priced_course(api, creator, admin)
    order = (await checkout(api, learner, course["id"])).json()
    stripe_world.drop = True
    await pay(localstripe, order["paymentIntentId"])
    delivery = await stripe_world.wait_for("payment_intent.succeeded")
    answers = await asyncio.gather(
        *(deliver(api, delivery.body, delivery.signature) for _ in range(5))
    )
    assert sorted(a.json()["outcome"] for a in answers) == ["duplicate"] * 4 + ["paid"]
    await assert_paid_once(db, order, learner, course["id"])
    # A replay, and the learner enrolling on top (already enrolled), write nothing.
    replay = await deliver(api, delivery.body, delivery.signature)
    assert replay.json()["outcome"] == "duplicate"
    enroll = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert enroll.status_code == 200, enroll.text
    await assert_paid_once(db, order, learner, course["id"])
    assert await events_of(db, "order.refunded") == []


async def test_the_webhook_path_and_the_reconciler_each_write_order_paid_once(
    api: httpx.AsyncClient,
    app: Litestar,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    # Through Stripe's own delivery.
    course = await priced_course(api, creator, admin)
    order = await bought(api, db, localstripe, learner, course)
    await assert_paid_once(db, order, learner, course["id"])

    # A lost webhook: the reconciler settles, the late webhook adds nothing.
    other = await priced_course(api, creator, admin)
    pending = (await checkout(api, learner, other["id"])).json()
    stripe_world.clear()
    stripe_world.drop = True
    await pay(localstripe, pending["paymentIntentId"])
    late = await stripe_world.wait_for("payment_intent.succeeded")
    await db.execute(
        "UPDATE orders SET created_at = now() - interval '10 minutes' WHERE id = $1",
        uuid.UUID(pending["id"]),
    )
    assert (await reconcile_once(db, app.state.ctx.payments)).paid == 1
    await assert_paid_once(db, pending, learner, other["id"])
    answer = await deliver(api, late.body, late.signature)
    assert answer.json()["outcome"] == "already_settled"
    await assert_paid_once(db, pending, learner, other["id"])


async def test_a_declined_card_writes_no_event(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    course = await priced_course(api, creator, admin)
    order = (await checkout(api, learner, course["id"])).json()
    assert await pay(localstripe, order["paymentIntentId"], DECLINED_CARD) != "succeeded"
    await stripe_world.wait_for("payment_intent.payment_failed")
    await wait_for_status(db, order["id"], "FAILED")
    assert purchases(await events_of(db, "order.paid", "enrollment.created")) == []
    assert await events_of(db, "order.refunded") == []


async def test_a_payment_for_a_learner_enrolled_meanwhile_writes_no_enrollment_created(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    course = await priced_course(api, creator, admin)
    order = (await checkout(api, learner, course["id"])).json()
    bulk = await api.post(
        f"/admin/courses/{course['id']}/enrollments",
        json={"emails": [learner.email]},
        headers=admin.headers,
    )
    assert bulk.status_code == 200, bulk.text
    await pay(localstripe, order["paymentIntentId"])
    await wait_for_status(db, order["id"], "PAID")
    events = await events_of(db, "order.paid", "enrollment.created")
    assert [(e["type"], e.get("source")) for e in events] == [
        ("enrollment.created", "admin"),
        ("order.paid", None),
    ]


async def test_an_admin_refund_writes_order_refunded(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    course = await priced_course(api, creator, admin)
    order = await bought(api, db, localstripe, learner, course)
    url = f"/admin/orders/{order['id']}/refund"
    refused = await api.post(url, json={"reason": " "}, headers=admin.headers)
    assert refused.status_code == 400
    assert await events_of(db, "order.refunded") == []
    refunded = await api.post(url, json={"reason": "the learner asked"}, headers=admin.headers)
    assert refunded.status_code == 200, refunded.text
    again = await api.post(url, json={"reason": "again"}, headers=admin.headers)
    assert again.status_code == 200

    events = await events_of(db, "order.refunded", "certificate.revoked")
    assert [e["type"] for e in events] == ["order.refunded"]  # no certificate to revoke
    event = events[0]
    row = await order_row(db, order["id"])
    assert event["orderId"] == order["id"] and event["userId"] == str(learner.id)
    assert event["courseId"] == course["id"]
    assert event["amount"] == PRICE and event["currency"] == "usd"
    assert datetime.fromisoformat(event["refundedAt"]) == row["refunded_at"]
    assert event["enrollmentEnded"] is True


async def test_charge_refunded_writes_order_refunded_and_certificate_revoked_once(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    course = await priced_course(api, creator, admin)
    order = await bought(api, db, localstripe, learner, course)
    lessons = (await api.get(f"/courses/{course['id']}/lessons", headers=learner.headers)).json()
    for lesson in lessons:
        done = await api.post(f"/lessons/{lesson['id']}/complete", headers=learner.headers)
        assert done.status_code == 200, done.text
    [issued] = await events_of(db, "certificate.issued")

    event = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": "charge.refunded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": f"ch_{uuid.uuid4().hex[:14]}",
                "object": "charge",
                "amount": 4999,
                "amount_refunded": 4999,
                "currency": "usd",
                "refunded": True,
                "payment_intent": order["paymentIntentId"],
            }
        },
    }
    body, signature = signed(event)
    answers = await asyncio.gather(*(deliver(api, body, signature) for _ in range(3)))
    assert sorted(a.json()["outcome"] for a in answers) == ["duplicate"] * 2 + ["refunded"]

    events = await events_of(db, "order.refunded", "certificate.revoked")
    assert [e["type"] for e in events] == ["order.refunded", "certificate.revoked"], events
    refunded, revoked = events
    assert refunded["orderId"] == order["id"] and refunded["enrollmentEnded"] is True
    assert refunded["amount"] == PRICE
    expected = {k: v for k, v in issued.items() if k not in ("id", "type", "status")}
    assert {k: revoked[k] for k in expected} == expected
    assert revoked["status"] == "REVOKED" and revoked["reason"] == "the order was refunded"
    certificate = await db.fetchrow(
        "SELECT revoked_at FROM certificates WHERE id = $1", uuid.UUID(issued["certificateId"])
    )
    assert datetime.fromisoformat(revoked["revokedAt"]) == certificate["revoked_at"]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = WebhookReceiver()
    server.start()
    yield server
    server.stop()


async def test_a_registered_webhook_endpoint_receives_order_paid(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    settings: Settings,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    receiver: WebhookReceiver,
) -> None:
    await register(api, admin, receiver, ["order.paid"])
    async with delivering(db, settings):
        course = await priced_course(api, creator, admin)
        order = await bought(api, db, localstripe, learner, course)

        async def arrived() -> bool:
            return len(receiver.received) == 1

        await eventually(arrived, within=15, what="order.paid delivered")
    [got] = receiver.received
    assert got.type == "order.paid" and receiver.rejected == []
    assert got.data["orderId"] == order["id"] and got.data["amount"] == PRICE
    [recorded] = await events_of(db, "order.paid")
    assert got.id == str(recorded["id"])
