"""SQL for the event log: append in the caller's transaction (each row carries its transaction's
id, the `xid` default, by which readers find it: lms.db.queries.event_cursors), purge old.

Raw because appending joins the callers' raw transactions (enrollment, completion, review), and
the dispatcher reads under a transaction-scoped advisory lock, so one dispatcher at a time cuts
ticks and fans out."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from lms.db.queries import Conn

# How long the event log keeps what every reader has passed (the housekeeper's purge), and how
# far back an endpoint disabled for longer can still be sent what it missed.
LOG_KEEPS_SECONDS = 30 * 86400

# Taken by the dispatcher for its fan-out transaction: two dispatchers (every worker runs
# one) never interleave the deliveries of one endpoint out of event order.
DISPATCH_LOCK = 0x1E7E_0001


async def insert(conn: Conn, type_: str, data: dict[str, Any]) -> uuid.UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "INSERT INTO events (type, data) VALUES ($1, $2) RETURNING id", type_, data
    )


async def insert_many(conn: Conn, types: list[str], data: list[str]) -> None:
    """Several events in one statement, in the order given (their `seq` follows it); `data`
    is each one's JSON text (whatever jsonb codec the connection has)."""
    await conn.execute(
        "INSERT INTO events (type, data) "
        "SELECT t, d::jsonb FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS e(t, d, n) "
        "ORDER BY n",
        types,
        data,
    )


async def lock_dispatch(conn: asyncpg.Connection) -> bool:
    """In the caller's transaction: whether this dispatcher is the one fanning out now."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", DISPATCH_LOCK))


async def course_of_lesson(conn: Conn, lesson_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT course_id FROM lessons WHERE id = $1", lesson_id
    )


async def purge_old(conn: Conn, older_than_seconds: int) -> None:
    """Delivered webhook deliveries, then events every reader has passed and no webhook queue
    names, past the age: the log is a queue with a memory of a month, not an archive. A webhook
    endpoint disabled for longer than the age no longer holds it back. (Another reader that
    never moves, an LRS configured once and gone, keeps the log from its place on: remove its
    event_cursors row.)"""
    await conn.execute(
        """
        DELETE FROM webhook_deliveries
        WHERE status = 'DELIVERED' AND delivered_at < now() - make_interval(secs => $1)
        """,
        float(older_than_seconds),
    )
    await conn.execute(
        """
        WITH passed AS (
            SELECT t.snapshot FROM event_ticks t
            WHERE t.id = (
                SELECT min(c.tick) FROM event_cursors c
                WHERE NOT EXISTS (
                    SELECT 1 FROM webhook_endpoints w
                    WHERE c.name = 'webhook:' || w.id
                      AND w.disabled_at < now() - make_interval(secs => $1))
            ) - 1
        )
        DELETE FROM events e
        WHERE e.occurred_at < now() - make_interval(secs => $1)
          AND (e.xid IS NULL
               OR pg_visible_in_snapshot(e.xid, (SELECT snapshot FROM passed)))
          AND NOT EXISTS (SELECT 1 FROM webhook_queue q WHERE q.event_id = e.id)
        """,
        float(older_than_seconds),
    )
