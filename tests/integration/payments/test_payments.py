"""Paid enrollment against a real Stripe-compatible server (localstripe): checkout, the test card,
the server's signed webhook, duplicates, a lost webhook and the reconciler, signatures, refunds."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import asyncpg
import httpx
import stripe
from litestar import Litestar

from lms.domain.payments.reconciler import reconcile_once
from tests.conftest import STRIPE_WEBHOOK_SECRET, TestUser
from tests.integration.courses.helpers import published_course
from tests.support.localstripe import LocalStripe, WebhookRelay

PRICE = "49.99"
# A card Stripe declines when charged. localstripe 1.15.10 declines pm_card_visa_chargeDeclined
# (4000000000000002) only when it is attached to a customer, and charges it otherwise; this one
# (4000000000000341) it declines at the charge, as Stripe declines both.
DECLINED_CARD = "pm_card_chargeCustomerFail"


async def priced_course(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser, price: str = PRICE
) -> dict[str, Any]:
    return await published_course(api, creator, admin, price=price)


async def checkout(api: httpx.AsyncClient, user: TestUser, course_id: str) -> httpx.Response:
    return await api.post(f"/courses/{course_id}/checkout", headers=user.headers)


async def pay(localstripe: LocalStripe, intent_id: str, card: str = "pm_card_visa") -> str:
    """What Stripe.js does in the browser: attach the card, confirm; the intent's status."""
    async with httpx.AsyncClient(base_url=localstripe.url, auth=("sk_test_lms", "")) as stripe_api:
        attached = await stripe_api.post(
            f"/v1/payment_intents/{intent_id}", data={"payment_method": card}
        )
        assert attached.status_code == 200, attached.text
        confirmed = await stripe_api.post(f"/v1/payment_intents/{intent_id}/confirm")
    body = confirmed.json()
    return str(body.get("status") or body.get("error", {}).get("code"))


async def order_row(db: asyncpg.Pool, order_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM orders WHERE id = $1", uuid.UUID(order_id))
    assert row is not None
    return row


async def wait_for_status(db: asyncpg.Pool, order_id: str, status: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await order_row(db, order_id))["status"] == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} is {(await order_row(db, order_id))['status']}")


async def enrollments(db: asyncpg.Pool, user: TestUser, course_id: str) -> int:
    n: int = await db.fetchval(
        "SELECT count(*) FROM enrollments WHERE user_id = $1 AND course_id = $2",
        user.id,
        uuid.UUID(course_id),
    )
    return n


def signed(payload: dict[str, Any], *, at: int | None = None) -> tuple[bytes, str]:
    """A Stripe event body and its Stripe-Signature, by the stripe SDK's own signing scheme."""
    body = json.dumps(payload)
    header = stripe.WebhookSignature.generate_signature_header(
        body, STRIPE_WEBHOOK_SECRET, timestamp=at
    )
    return body.encode(), header


async def deliver(api: httpx.AsyncClient, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return await api.post("/payments/stripe/webhook", content=body, headers=headers)


async def bought(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    learner: TestUser,
    course: dict[str, Any],
) -> dict[str, Any]:
    """A PAID order of `course` by `learner`, through the whole flow."""
    order = (await checkout(api, learner, course["id"])).json()
    assert await pay(localstripe, order["paymentIntentId"]) == "succeeded"
    await wait_for_status(db, order["id"], "PAID")
    return dict(order)


async def test_buy_a_course_end_to_end(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    course = await priced_course(api, creator, admin)
    refused = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert refused.status_code == 402, refused.text
    assert refused.json()["checkoutPath"] == f"/courses/{course['id']}/checkout"
    assert refused.json()["status_code"] == 402

    made = await checkout(api, learner, course["id"])
    assert made.status_code == 201, made.text
    order = made.json()
    assert order["status"] == "PENDING" and order["amount"] == PRICE
    assert order["currency"] == "usd" and order["provider"] == "stripe"
    assert order["clientSecret"] and order["paymentIntentId"]
    again = await checkout(api, learner, course["id"])
    assert again.status_code == 200 and again.json()["id"] == order["id"]

    # A price change afterwards does not touch the order.
    await db.execute("UPDATE courses SET price = 10 WHERE id = $1", uuid.UUID(course["id"]))

    assert await pay(localstripe, order["paymentIntentId"]) == "succeeded"
    delivery = await stripe_world.wait_for("payment_intent.succeeded")
    assert delivery.signature.startswith("t=")
    await wait_for_status(db, order["id"], "PAID")
    assert await enrollments(db, learner, course["id"]) == 1

    mine = (await api.get("/orders", headers=learner.headers)).json()
    assert [o["id"] for o in mine["items"]] == [order["id"]]
    paid = mine["items"][0]
    assert paid["status"] == "PAID" and paid["clientSecret"] is None and paid["paidAt"]
    assert paid["amount"] == PRICE
    enrolled = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert enrolled.status_code == 200, enrolled.text
    progress = await api.get(f"/courses/{course['id']}/progress", headers=learner.headers)
    assert progress.status_code == 200
    # Enrolled: another checkout is refused.
    assert (await checkout(api, learner, course["id"])).status_code == 409

    dashboard = (await api.get("/creator/dashboard", headers=creator.headers)).json()
    revenue = dashboard["courses"][0]["revenue"]
    assert revenue == {"grossAmount": PRICE, "refundedAmount": "0.00", "currency": "usd"}


async def test_a_declined_card_fails_the_order(
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
    assert await enrollments(db, learner, course["id"]) == 0
    refused = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert refused.status_code == 402
    # A new checkout makes a new order.
    fresh = await checkout(api, learner, course["id"])
    assert fresh.status_code == 201 and fresh.json()["id"] != order["id"]


async def test_the_same_event_five_times_at_once_enrolls_once(
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
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    outcomes = sorted(a.json()["outcome"] for a in answers)
    assert outcomes == ["duplicate"] * 4 + ["paid"], outcomes
    assert (await order_row(db, order["id"]))["status"] == "PAID"
    assert await enrollments(db, learner, course["id"]) == 1
    event_id = json.loads(delivery.body)["id"]
    assert await db.fetchval("SELECT count(*) FROM stripe_events WHERE id = $1", event_id) == 1
    # A replay later is a no-op too.
    replay = await deliver(api, delivery.body, delivery.signature)
    assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"


async def test_concurrent_checkouts_make_one_pending_order(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    course = await priced_course(api, creator, admin)
    answers = await asyncio.gather(*(checkout(api, learner, course["id"]) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200] * 4 + [201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len({a.json()["paymentIntentId"] for a in answers}) == 1
    assert await db.fetchval("SELECT count(*) FROM orders") == 1


async def test_a_dropped_webhook_is_settled_by_the_reconciler(
    api: httpx.AsyncClient,
    app: Litestar,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    course = await priced_course(api, creator, admin)
    order = (await checkout(api, learner, course["id"])).json()
    declined_course = await priced_course(api, creator, admin, price="5.00")
    declined = (await checkout(api, learner, declined_course["id"])).json()
    stripe_world.drop = True
    await pay(localstripe, order["paymentIntentId"])
    await pay(localstripe, declined["paymentIntentId"], DECLINED_CARD)
    await stripe_world.wait_for("payment_intent.succeeded")
    await stripe_world.wait_for("payment_intent.payment_failed")
    assert (await order_row(db, order["id"]))["status"] == "PENDING"

    gateway = app.state.ctx.payments
    # Young orders are left to their webhook.
    assert (await reconcile_once(db, gateway)).checked == 0
    await db.execute("UPDATE orders SET created_at = now() - interval '10 minutes'")
    tally = await reconcile_once(db, gateway)
    assert (tally.checked, tally.paid, tally.failed) == (2, 1, 1)
    assert (await order_row(db, order["id"]))["status"] == "PAID"
    assert (await order_row(db, declined["id"]))["status"] == "FAILED"
    assert await enrollments(db, learner, course["id"]) == 1
    # The late webhook finds the order settled and changes nothing.
    late = stripe_world.of_type("payment_intent.succeeded")[-1]
    answer = await deliver(api, late.body, late.signature)
    assert answer.status_code == 200 and answer.json()["outcome"] == "already_settled"
    assert await enrollments(db, learner, course["id"]) == 1


async def test_the_reconciler_runs_in_one_process_at_a_time(
    app: Litestar, db: asyncpg.Pool, stripe_world: WebhookRelay
) -> None:
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('lms.payments.reconciler', 0))"
        )
        assert (await reconcile_once(db, app.state.ctx.payments)).skipped_locked


async def test_a_bad_or_stale_signature_is_refused_and_changes_nothing(
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
    event = json.loads(delivery.body)

    tampered = delivery.body.replace(b'"amount": 4999', b'"amount": 1')
    assert tampered != delivery.body
    stale_body, stale_signature = signed(event, at=int(time.time()) - 3600)
    other_secret = stripe.WebhookSignature.generate_signature_header(
        delivery.body.decode(), "whsec_someone_else"
    )
    for body, signature in [
        (tampered, delivery.signature),
        (stale_body, stale_signature),
        (delivery.body, other_secret),
        (delivery.body, None),
        (delivery.body, "t=1,v1=00"),
        (b"\xff\xfe not json", delivery.signature),
    ]:
        answer = await deliver(api, body, signature)
        assert answer.status_code == 400, answer.text
        assert "Stripe-Signature" in answer.json()["detail"]
    assert (await order_row(db, order["id"]))["status"] == "PENDING"
    assert await db.fetchval("SELECT count(*) FROM stripe_events") == 0
    assert await enrollments(db, learner, course["id"]) == 0


async def test_a_foreign_currency_or_amount_flags_the_order(
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
    event = json.loads((await stripe_world.wait_for("payment_intent.succeeded")).body)
    for change in ({"currency": "eur"}, {"amount": 100}):
        forged = {**event, "data": {"object": {**event["data"]["object"], **change}}}
        answer = await deliver(api, *signed(forged))
        assert answer.status_code == 409, answer.text
        assert "does not match" in answer.json()["detail"]
        row = await order_row(db, order["id"])
        assert row["status"] == "PENDING" and row["flag"]
        assert await enrollments(db, learner, course["id"]) == 0
    flagged = (await api.get("/admin/orders", headers=admin.headers)).json()["items"][0]
    assert flagged["flag"] and flagged["status"] == "PENDING"


async def test_an_admin_refund_ends_access(
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
    assert (
        await api.post(url, json={"reason": "asked"}, headers=learner.headers)
    ).status_code == 403
    assert (await api.post(url, json={"reason": "  "}, headers=admin.headers)).status_code == 400

    refunded = await api.post(url, json={"reason": "the learner asked"}, headers=admin.headers)
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "REFUNDED" and refunded.json()["refundedAt"]
    assert await enrollments(db, learner, course["id"]) == 0
    progress = await api.get(f"/courses/{course['id']}/progress", headers=learner.headers)
    assert progress.status_code == 404
    again = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert again.status_code == 402
    # Refunded at Stripe (localstripe keeps the refund).
    async with httpx.AsyncClient(auth=("sk_test_lms", "")) as stripe_api:
        listed = await stripe_api.get(f"{localstripe.url}/v1/refunds", params={"limit": 100})
    refunds = listed.json()["data"]
    assert any(r["payment_intent"] == order["paymentIntentId"] for r in refunds)
    audit = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'order.refund'")
    assert audit["actor_id"] == admin.id and audit["after"]["reason"] == "the learner asked"
    # Refunding again answers the order as it is.
    twice = await api.post(url, json={"reason": "again"}, headers=admin.headers)
    assert twice.status_code == 200 and twice.json()["status"] == "REFUNDED"
    dashboard = (await api.get("/creator/dashboard", headers=creator.headers)).json()
    revenue = dashboard["courses"][0]["revenue"]
    assert revenue == {"grossAmount": PRICE, "refundedAmount": PRICE, "currency": "usd"}


async def test_charge_refunded_ends_access_and_revokes_the_certificate(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    localstripe: LocalStripe,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    """localstripe sends no charge.refunded: the event is built and signed as Stripe does."""
    course = await priced_course(api, creator, admin)
    order = await bought(api, db, localstripe, learner, course)
    lessons = (await api.get(f"/courses/{course['id']}/lessons", headers=learner.headers)).json()
    for lesson in lessons:
        done = await api.post(f"/lessons/{lesson['id']}/complete", headers=learner.headers)
        assert done.status_code == 200, done.text
    certificate = (await api.get("/certificates", headers=learner.headers)).json()[0]
    assert certificate["status"] == "VALID"

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
    answer = await deliver(api, *signed(event))
    assert answer.status_code == 200 and answer.json()["outcome"] == "refunded", answer.text
    assert (await order_row(db, order["id"]))["status"] == "REFUNDED"
    assert await enrollments(db, learner, course["id"]) == 0
    mine = (await api.get("/certificates", headers=learner.headers)).json()
    assert mine[0]["status"] == "REVOKED"
    verified = await api.get(f"/certificates/verify/{certificate['serialHash']}")
    assert verified.status_code == 200 and verified.json()["valid"] is False
    replay = await deliver(api, *signed(event))
    assert replay.json()["outcome"] == "duplicate"


async def test_bad_checkouts_get_a_clear_4xx_and_change_nothing(
    api: httpx.AsyncClient,
    app: Litestar,
    db: asyncpg.Pool,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    for price in ("-1", "-0.01", "1e12", "99999999999"):
        made = await api.post(
            "/courses", json={"title": "Priced", "price": price}, headers=creator.headers
        )
        assert made.status_code == 400, (price, made.text)

    free = await priced_course(api, creator, admin, price="0.00")
    answer = await checkout(api, learner, free["id"])
    assert answer.status_code == 409 and "enroll" in answer.json()["detail"]

    absurd = await priced_course(api, creator, admin)
    await db.execute(
        "UPDATE courses SET price = 99999999.99 WHERE id = $1", uuid.UUID(absurd["id"])
    )
    assert (await checkout(api, learner, absurd["id"])).status_code == 400

    assert (await checkout(api, learner, str(uuid.uuid4()))).status_code == 404

    # Unpublished mid-checkout: the order stays as it was, checkout is 404 like enroll.
    course = await priced_course(api, creator, admin)
    order = (await checkout(api, learner, course["id"])).json()
    await db.execute("UPDATE courses SET status = 'DRAFT' WHERE id = $1", uuid.UUID(course["id"]))
    assert (await checkout(api, learner, course["id"])).status_code == 404
    assert (
        await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    ).status_code == 404
    await db.execute(
        "UPDATE courses SET status = 'PUBLISHED' WHERE id = $1", uuid.UUID(course["id"])
    )
    # A course with orders is not deleted (the money taken keeps its record).
    deleted = await api.delete(f"/courses/{course['id']}", headers=admin.headers)
    assert deleted.status_code == 409, deleted.text
    assert (await order_row(db, order["id"]))["status"] == "PENDING"
    assert await db.fetchval("SELECT count(*) FROM orders") == 1

    # Admin bulk enrollment grants access without payment; checkout then says enrolled.
    bulk = await api.post(
        f"/admin/courses/{course['id']}/enrollments",
        json={"emails": [creator.email]},
        headers=admin.headers,
    )
    assert bulk.status_code == 200
    assert (await checkout(api, creator, course["id"])).status_code == 409

    # Payments not configured: 503.
    saved = app.state.ctx.payments
    app.state.ctx.payments = None
    try:
        other = await priced_course(api, creator, admin)
        answer = await checkout(api, learner, other["id"])
        assert answer.status_code == 503, answer.text
    finally:
        app.state.ctx.payments = saved


async def test_order_lists(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    stripe_world: WebhookRelay,
    make_user: Any,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    other = await make_user("LEARNER")
    courses = [await priced_course(api, creator, admin) for _ in range(3)]
    for course in courses:
        assert (await checkout(api, learner, course["id"])).status_code == 201
    theirs = (await checkout(api, other, courses[0]["id"])).json()
    assert theirs["clientSecret"]

    first = (await api.get("/orders?limit=2", headers=learner.headers)).json()
    assert len(first["items"]) == 2 and first["nextCursor"]
    rest = (
        await api.get(f"/orders?limit=2&cursor={first['nextCursor']}", headers=learner.headers)
    ).json()
    ids = [o["id"] for o in first["items"] + rest["items"]]
    assert len(ids) == 3 and theirs["id"] not in ids

    everyone = (await api.get("/admin/orders", headers=admin.headers)).json()["items"]
    assert len(everyone) == 4 and all(o["clientSecret"] is None for o in everyone)
    one_course = (
        await api.get(f"/admin/orders?courseId={courses[0]['id']}", headers=admin.headers)
    ).json()["items"]
    assert len(one_course) == 2
    paid = (await api.get("/admin/orders?status=PAID", headers=admin.headers)).json()
    assert paid["items"] == []
    assert (await api.get("/admin/orders?status=NOPE", headers=admin.headers)).status_code == 400
    assert (await api.get("/admin/orders", headers=learner.headers)).status_code == 403


async def test_the_reconciler_fails_an_order_stripe_does_not_know(
    api: httpx.AsyncClient,
    app: Litestar,
    db: asyncpg.Pool,
    stripe_world: WebhookRelay,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    """A local Stripe restarted (it forgets), or an intent never made: the order is FAILED, not
    looked up forever."""
    course = await priced_course(api, creator, admin)
    order = (await checkout(api, learner, course["id"])).json()
    await db.execute(
        "UPDATE orders SET payment_intent_id = 'pi_forgotten',"
        " created_at = now() - interval '1 hour'"
    )
    tally = await reconcile_once(db, app.state.ctx.payments)
    assert (tally.checked, tally.failed) == (1, 1)
    assert (await order_row(db, order["id"]))["status"] == "FAILED"
