"""SQL for the event log: append in the caller's transaction, claim what is not fanned out yet.

Raw because appending joins the callers' raw transactions (enrollment, completion, review), and
the claim runs under a transaction-scoped advisory lock, so one dispatcher at a time fans out,
in `seq` order."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from lms.db.queries import Conn

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


async def claim_undispatched(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The oldest events not fanned out yet. The caller holds DISPATCH_LOCK (lock_dispatch) for
    its transaction, so no other dispatcher reads them meanwhile: no row lock is taken (one
    would cost a write per event)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT id, seq, type, occurred_at, data FROM events
        WHERE dispatched_at IS NULL
        ORDER BY seq
        LIMIT $1
        """,
        limit,
    )
    return rows


async def mark_dispatched(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> None:
    await conn.execute("UPDATE events SET dispatched_at = now() WHERE id = ANY($1::uuid[])", ids)


async def undispatched_count(conn: Conn) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM events WHERE dispatched_at IS NULL"))


async def any_undispatched(conn: Conn) -> bool:
    return bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events WHERE dispatched_at IS NULL)")
    )


async def course_of_lesson(conn: Conn, lesson_id: uuid.UUID) -> uuid.UUID | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        "SELECT course_id FROM lessons WHERE id = $1", lesson_id
    )


async def purge_old(conn: Conn, older_than_seconds: int) -> None:
    """Delivered webhook deliveries, then events every sink is done with, past the age: the
    log is a queue with a memory of a month, not an archive. A sink whose queue reads events
    adds its NOT EXISTS here (the xAPI queue holds its statements whole)."""
    await conn.execute(
        """
        DELETE FROM webhook_deliveries
        WHERE status = 'DELIVERED' AND delivered_at < now() - make_interval(secs => $1)
        """,
        float(older_than_seconds),
    )
    await conn.execute(
        """
        DELETE FROM events e
        WHERE e.dispatched_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (SELECT 1 FROM webhook_queue q WHERE q.event_id = e.id)
        """,
        float(older_than_seconds),
    )
