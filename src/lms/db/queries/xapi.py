"""SQL for the xAPI queue: enqueue in the fan-out's transaction, read a due batch under the
senders' advisory lock, settle it (a sent statement is deleted: the queue holds only what the
LRS has not taken, and REJECTED statements for an operator).

Raw because enqueueing joins the event dispatcher's raw transaction, and the senders' turn is a
session-level advisory lock held on the connection that reads and settles a batch."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from lms.db.queries import Conn


async def enqueue(
    conn: Conn, rows: Sequence[tuple[uuid.UUID, uuid.UUID, str, dict[str, Any]]]
) -> int:
    """Queue (event id, statement id, event type, statement) rows; an event still queued is left
    as it is. The number queued."""
    if not rows:
        return 0
    queued = await conn.fetchval(
        """
        WITH added AS (
            INSERT INTO xapi_statements (event_id, statement_id, event_type, statement)
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[])
            ON CONFLICT (event_id) DO NOTHING
            RETURNING 1
        )
        SELECT count(*) FROM added
        """,
        [row[0] for row in rows],
        [row[1] for row in rows],
        [row[2] for row in rows],
        [row[3] for row in rows],
    )
    return int(queued)


# Held by the sender that is sending, for the length of one batch (session-level, on the
# connection that reads and settles the batch): senders in several workers take turns, so no
# row needs a lease written into it, and a sender that dies lets go with its connection.
SEND_LOCK = 0x1E7E_0002


async def try_lock_sending(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", SEND_LOCK))


async def unlock_sending(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", SEND_LOCK)


async def due(conn: Conn, *, limit: int) -> list[asyncpg.Record]:
    """Up to `limit` due statements, oldest first (the caller holds SEND_LOCK)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT event_id, statement_id, event_type, statement, attempts FROM xapi_statements
        WHERE status = 'PENDING' AND next_attempt_at <= now()
        ORDER BY next_attempt_at, created_at
        LIMIT $1
        """,
        limit,
    )
    return rows


async def forget_sent(conn: Conn, event_ids: list[uuid.UUID]) -> None:
    """The LRS took them: they leave the queue (the LRS keeps them)."""
    await conn.execute("DELETE FROM xapi_statements WHERE event_id = ANY($1::uuid[])", event_ids)


async def mark_retry(
    conn: Conn, event_ids: list[uuid.UUID], error: str, delay_seconds: float
) -> None:
    await conn.execute(
        """
        UPDATE xapi_statements SET attempts = attempts + 1, last_error = $2,
               next_attempt_at = now() + make_interval(secs => $3)
        WHERE event_id = ANY($1::uuid[])
        """,
        event_ids,
        error[:2000],
        delay_seconds,
    )


async def mark_rejected(conn: Conn, event_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        """
        UPDATE xapi_statements SET status = 'REJECTED', attempts = attempts + 1, last_error = $2
        WHERE event_id = $1
        """,
        event_id,
        error[:2000],
    )


async def seconds_until_next_due(conn: Conn) -> float | None:
    """Seconds until the next pending statement is due (0: now), None when none is pending
    (as lms.db.queries.outbox.seconds_until_next_due: greatest() would read none as now)."""
    wait: float | None = await conn.fetchval(
        """
        SELECT extract(epoch FROM min(next_attempt_at) - now())::float8
        FROM xapi_statements WHERE status = 'PENDING'
        """
    )
    return None if wait is None else max(wait, 0.0)


async def counts(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM xapi_statements GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}


async def pending_count(conn: Conn) -> int:
    """The queue's depth (on the partial index of PENDING rows)."""
    return int(await conn.fetchval("SELECT count(*) FROM xapi_statements WHERE status = 'PENDING'"))
