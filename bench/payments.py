"""Issue 21's bench: `POST /courses/:id/checkout` and the Stripe webhook, lms only, against
localstripe (a development dependency, run as its own process as tests/support/localstripe.py
runs it).

checkout: distinct (learner, priced course) pairs, each learner signed in once; every checkout
creates its PaymentIntent at localstripe (201 expected). stripe-webhook: what a sale spike sends
lms: a `payment_intent.succeeded` event for each order the checkout run created (the intent,
amount and currency of its row, its id in the metadata, as Stripe's own event object carries
them), each event delivered twice (Stripe delivers at least once), in shuffled order, signed
with LMS_STRIPE_WEBHOOK_SECRET as Stripe signs (`t=<time>,v1=<HMAC-SHA256 of "<t>.<body>">`).
The events are built here and not sent by localstripe: its own webhook sender is one Python
process posting one event at a time, which would measure it, not lms. Afterwards: every order
whose event was sent is PAID, and no learner holds two enrollments of one course.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.events import Post
from bench.harness import BenchError
from lms.netutil import free_port

STRIPE_KEY = "sk_test_bench"
WEBHOOK_SECRET = "whsec_" + "bench" * 6


@contextlib.contextmanager
def running_localstripe(log: Path) -> Iterator[str]:
    """localstripe on a free loopback port (from scratch); its URL."""
    binary = Path(sys.executable).parent / "localstripe"
    if not binary.is_file():
        raise BenchError("localstripe is missing: it is a development dependency (uv sync)")
    port = free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(binary), "--port", str(port), "--from-scratch"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchError(f"localstripe exited: {log.read_text(errors='replace')[-500:]}")
            if time.monotonic() > deadline:
                raise BenchError("localstripe did not start within 60 s")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/balance", auth=(STRIPE_KEY, "")).status_code < 500:
                    break
            time.sleep(0.2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def payments_environ(environ: dict[str, str], stripe_url: str) -> dict[str, str]:
    return {
        **environ,
        "LMS_STRIPE_SECRET_KEY": STRIPE_KEY,
        "LMS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "LMS_STRIPE_API_BASE": stripe_url,
    }


async def checkout_posts(
    database_url: str, settings: Any, learners: list[uuid.UUID], count: int, seed: int
) -> list[Post]:
    """`count` checkouts: distinct (learner, priced published course) pairs the learner has
    neither an enrollment nor an order for."""
    from lms.domain.auth.logins import open_logins

    conn = await asyncpg.connect(database_url)
    try:
        courses = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM courses WHERE status = 'PUBLISHED' AND price > 0 "
                "ORDER BY md5(id::text || $1) LIMIT 2000",
                str(seed),
            )
        ]
        if not courses or not learners:
            return []
        taken = {
            (r["user_id"], r["course_id"])
            for r in await conn.fetch(
                "SELECT user_id, course_id FROM enrollments WHERE user_id = ANY($1::uuid[]) "
                "UNION SELECT user_id, course_id FROM orders WHERE user_id = ANY($1::uuid[])",
                learners,
            )
        }
        logins = await open_logins(conn, settings, learners, user_agent="bench.payments")
    finally:
        await conn.close()
    tokens = {u: login.access_token for u, login in zip(learners, logins, strict=True)}
    rng = random.Random(seed)  # noqa: S311 - benchmark inputs
    out: list[Post] = []
    for course in courses:
        for user in rng.sample(learners, len(learners)):
            if (user, course) not in taken:
                out.append(Post(f"/courses/{course}/checkout", f"Bearer {tokens[user]}"))
                if len(out) >= count:
                    rng.shuffle(out)
                    return out
    rng.shuffle(out)
    return out


def sign(body: str, secret: str, at: int) -> str:
    mac = hmac.new(secret.encode(), f"{at}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


async def sale_orders(
    database_url: str, learners: list[uuid.UUID], total: int, currency: str, seed: int
) -> int:
    """Top the learners' PENDING orders up to `total` with orders as checkout leaves them (the
    course's price, an intent id), written directly: checkout runs at localstripe's pace (a few
    dozen a second here), and a sale spike's webhooks need many more orders than one checkout
    run leaves. Their intents are not at localstripe (`pi_bench_...`): the webhook does not ask
    Stripe, it verifies the signature and the amount. The number added."""
    conn = await asyncpg.connect(database_url)
    try:
        have = await conn.fetchval(
            "SELECT count(*) FROM orders WHERE user_id = ANY($1::uuid[]) AND status = 'PENDING' "
            "AND payment_intent_id IS NOT NULL",
            learners,
        )
        missing = total - int(have)
        if missing <= 0:
            return 0
        added = await conn.fetchval(
            """
            WITH candidates AS (
                SELECT u.id AS user_id, c.id AS course_id, c.price
                FROM unnest($1::uuid[]) AS u (id)
                CROSS JOIN LATERAL (
                    SELECT id, price FROM courses
                    WHERE status = 'PUBLISHED' AND price > 0
                    ORDER BY md5(id::text || u.id::text || $4) LIMIT 50
                ) c
                WHERE NOT EXISTS (SELECT 1 FROM enrollments e
                                  WHERE e.user_id = u.id AND e.course_id = c.id)
                  AND NOT EXISTS (SELECT 1 FROM orders o
                                  WHERE o.user_id = u.id AND o.course_id = c.id)
                LIMIT $2
            ), added AS (
                INSERT INTO orders (user_id, course_id, amount, currency, payment_intent_id,
                                    client_secret)
                SELECT user_id, course_id, price, $3, 'pi_bench_' || md5(random()::text),
                       'pi_bench_secret'
                FROM candidates
                RETURNING 1
            )
            SELECT count(*) FROM added
            """,
            learners,
            missing,
            currency,
            str(seed),
        )
        return int(added)
    finally:
        await conn.close()


async def webhook_posts(database_url: str, learners: list[uuid.UUID], seed: int) -> list[Post]:
    """A payment_intent.succeeded event per PENDING order of `learners` that has its intent,
    each twice (the same event id), shuffled, signed now."""
    from lms.integrations.stripe_gateway import to_minor_units

    conn = await asyncpg.connect(database_url)
    try:
        orders = await conn.fetch(
            "SELECT id, payment_intent_id, amount, currency FROM orders "
            "WHERE user_id = ANY($1::uuid[]) AND status = 'PENDING' "
            "AND payment_intent_id IS NOT NULL",
            learners,
        )
    finally:
        await conn.close()
    now = int(time.time())
    posts: list[Post] = []
    for order in orders:
        amount: Decimal = order["amount"]
        event = {
            "id": f"evt_bench_{secrets.token_hex(12)}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": now,
            "livemode": False,
            "data": {
                "object": {
                    "id": order["payment_intent_id"],
                    "object": "payment_intent",
                    "amount": to_minor_units(amount),
                    "amount_received": to_minor_units(amount),
                    "currency": order["currency"],
                    "status": "succeeded",
                    "metadata": {"order_id": str(order["id"])},
                }
            },
        }
        body = json.dumps(event, separators=(",", ":"))
        post = Post("/payments/stripe/webhook", None, sign(body, WEBHOOK_SECRET, now), body)
        posts += [post, post]
    random.Random(seed).shuffle(posts)  # noqa: S311 - benchmark inputs
    return posts


async def sale_check(database_url: str, learners: list[uuid.UUID], events: int) -> dict[str, Any]:
    """After the webhook run: orders by status, enrollments the PAID orders gave, and learners
    holding two enrollments of one course (must be 0)."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            """
            SELECT
              (SELECT count(*) FROM orders WHERE user_id = ANY($1::uuid[])) AS orders,
              (SELECT count(*) FROM orders WHERE user_id = ANY($1::uuid[])
                 AND status = 'PAID') AS paid,
              (SELECT count(*) FROM orders o WHERE o.user_id = ANY($1::uuid[])
                 AND o.status = 'PAID' AND EXISTS (SELECT 1 FROM enrollments e
                   WHERE e.user_id = o.user_id AND e.course_id = o.course_id)) AS paid_enrolled,
              (SELECT count(*) FROM (SELECT 1 FROM enrollments WHERE user_id = ANY($1::uuid[])
                 GROUP BY user_id, course_id HAVING count(*) > 1) d) AS duplicate_enrollments
            """,
            learners,
        )
    finally:
        await conn.close()
    figures = dict(row)
    figures["events_sent"] = events
    figures["unpaid_after_event"] = max(events - figures["paid"], 0)
    return figures
