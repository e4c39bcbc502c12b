"""Orders and the Stripe events already handled.

Raw because every write here is a decision taken by PostgreSQL under concurrency: one PENDING
order per (learner, course) is a partial unique index that an INSERT ... ON CONFLICT consults,
an event id is recorded by an INSERT that a concurrent duplicate waits on, and each order
transition is a conditional UPDATE on a locked row. The webhook is what a sale spike hits.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

import asyncpg

from lms.db.queries import Conn
from lms.db.queries.learning import enrollment_created_data

COLUMNS = """id, course_id, user_id, amount, currency, status, provider, payment_intent_id,
client_secret, flag, created_at, paid_at, refunded_at"""


async def course_for_checkout(conn: Conn, course_id: uuid.UUID) -> asyncpg.Record | None:
    """The course's price and status, its row locked against a concurrent price change only
    for the length of the order's insert (FOR SHARE: checkouts do not wait on each other)."""
    return await conn.fetchrow(
        "SELECT id, price, status FROM courses WHERE id = $1 FOR SHARE", course_id
    )


async def insert_pending(
    conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID, amount: Decimal, currency: str
) -> asyncpg.Record | None:
    """The new PENDING order, or None when the learner has one for the course already (the
    partial unique index orders_one_pending_idx decides between racers)."""
    return await conn.fetchrow(
        f"""
        INSERT INTO orders (user_id, course_id, amount, currency) VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id, course_id) WHERE status = 'PENDING' DO NOTHING
        RETURNING {COLUMNS}
        """,
        user_id,
        course_id,
        amount,
        currency,
    )


async def pending_of(conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM orders"
        " WHERE user_id = $1 AND course_id = $2 AND status = 'PENDING'",
        user_id,
        course_id,
    )


async def attach_intent(
    conn: Conn, order_id: uuid.UUID, intent_id: str, client_secret: str | None
) -> asyncpg.Record | None:
    """Name the order's PaymentIntent, once: a second checkout racing for the same order finds
    it named and uses that one."""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET payment_intent_id = $2, client_secret = $3, updated_at = now()
        WHERE id = $1 AND payment_intent_id IS NULL
        RETURNING {COLUMNS}
        """,
        order_id,
        intent_id,
        client_secret,
    )


async def by_id(conn: Conn, order_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM orders WHERE id = $1{suffix}", order_id)


async def by_intent(conn: Conn, intent_id: str, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM orders WHERE payment_intent_id = $1{suffix}", intent_id
    )


async def record_event(conn: Conn, event_id: str, event_type: str) -> bool:
    """True when the event is new. A concurrent delivery of the same event waits here on the
    primary key until the first one's transaction ends: it then finds the row (a no-op), or,
    had the first rolled back, records and handles it itself."""
    status: str = await conn.execute(
        """
        INSERT INTO stripe_events (id, type, outcome) VALUES ($1, $2, 'received')
        ON CONFLICT (id) DO NOTHING
        """,
        event_id,
        event_type,
    )
    return status == "INSERT 0 1"


async def settle_event(conn: Conn, event_id: str, order_id: uuid.UUID | None, outcome: str) -> None:
    await conn.execute(
        "UPDATE stripe_events SET order_id = $2, outcome = $3 WHERE id = $1",
        event_id,
        order_id,
        outcome,
    )


async def mark_paid(conn: Conn, order_id: uuid.UUID) -> asyncpg.Record | None:
    """PENDING (or FAILED: a second card on the same intent succeeded) -> PAID, or None."""
    return await conn.fetchrow(
        f"""
        UPDATE orders SET status = 'PAID', paid_at = now(), updated_at = now(),
                          client_secret = NULL, flag = NULL
        WHERE id = $1 AND status IN ('PENDING', 'FAILED')
        RETURNING {COLUMNS}
        """,
        order_id,
    )


async def mark_failed(conn: Conn, order_id: uuid.UUID, reason: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE orders SET status = 'FAILED', failure_reason = left($2, 1000), updated_at = now(),
                          client_secret = NULL
        WHERE id = $1 AND status = 'PENDING'
        RETURNING {COLUMNS}
        """,
        order_id,
        reason,
    )


async def mark_refunded(conn: Conn, order_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE orders SET status = 'REFUNDED', refunded_at = now(), updated_at = now()
        WHERE id = $1 AND status = 'PAID'
        RETURNING {COLUMNS}
        """,
        order_id,
    )


async def flag(conn: Conn, order_id: uuid.UUID, why: str) -> None:
    await conn.execute(
        "UPDATE orders SET flag = left($2, 1000), updated_at = now() WHERE id = $1",
        order_id,
        why,
    )


async def grant_enrollment(conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID) -> bool:
    """The paid enrollment, whatever the course's status now (the learner paid for it), and its
    enrollment.created event (source "purchase") in the same statement; False, and no event,
    when enrolled already (the unique (user, course) constraint)."""
    created: bool = await conn.fetchval(
        f"""
        WITH granted AS (
            INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2)
            ON CONFLICT (user_id, course_id) DO NOTHING
            RETURNING id, user_id, course_id, enrolled_at
        ), recorded AS (
            INSERT INTO events (type, data)
            SELECT 'enrollment.created', {enrollment_created_data("granted", "purchase")}
            FROM granted
        )
        SELECT EXISTS (SELECT 1 FROM granted)
        """,
        user_id,
        course_id,
    )
    return created


# What certificate.revoked tells integrators (lms.domain.certificates.services.certificate_event).
REVOKED_CERTIFICATE_COLUMNS = """id, enrollment_id, user_id, course_id, serial_hash, issued_at,
    status, revoked_at, revoked_reason"""


async def end_access(
    conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID, reason: str
) -> tuple[int, list[asyncpg.Record]]:
    """Revoke the enrollment's certificate (it stays verifiable, as REVOKED) and delete the
    enrollment, its progress with it, unless another PAID order of the same learner still pays
    for the course. (The number of enrollments deleted (0 or 1), the certificates revoked.)"""
    still_paid = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM orders WHERE user_id = $1 AND course_id = $2"
        " AND status = 'PAID')",
        user_id,
        course_id,
    )
    if still_paid:
        return 0, []
    revoked: list[asyncpg.Record] = await conn.fetch(
        f"""
        UPDATE certificates SET status = 'REVOKED', revoked_at = now(), revoked_reason = $3
        WHERE user_id = $1 AND course_id = $2 AND status = 'VALID'
          AND enrollment_id IN (SELECT id FROM enrollments WHERE user_id = $1 AND course_id = $2)
        RETURNING {REVOKED_CERTIFICATE_COLUMNS}
        """,
        user_id,
        course_id,
        reason,
    )
    status: str = await conn.execute(
        "DELETE FROM enrollments WHERE user_id = $1 AND course_id = $2", user_id, course_id
    )
    return int(status.split()[-1]), revoked


async def is_enrolled(conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM enrollments WHERE user_id = $1 AND course_id = $2)",
        user_id,
        course_id,
    )
    return found


async def stale_pending(conn: Conn, older_than_seconds: int, limit: int) -> list[asyncpg.Record]:
    """PENDING orders past `older_than_seconds`, least recently checked first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM orders
        WHERE status = 'PENDING' AND created_at < now() - make_interval(secs => $1)
          AND flag IS NULL
        ORDER BY checked_at NULLS FIRST, created_at
        LIMIT $2
        """,
        older_than_seconds,
        limit,
    )
    return rows


async def mark_checked(conn: Conn, order_id: uuid.UUID) -> None:
    await conn.execute("UPDATE orders SET checked_at = now() WHERE id = $1", order_id)


async def page(
    conn: Conn,
    *,
    user_id: uuid.UUID | None,
    course_id: uuid.UUID | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Newest first, keyset on (created_at, id); each filter only when given."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM orders
        WHERE ($1::uuid IS NULL OR user_id = $1)
          AND ($2::uuid IS NULL OR course_id = $2)
          AND ($3::text IS NULL OR status = $3)
          AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
        ORDER BY created_at DESC, id DESC
        LIMIT $6
        """,
        user_id,
        course_id,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return rows
