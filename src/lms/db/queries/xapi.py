"""SQL for the xAPI queue: enqueue in the fan-out's transaction, lease a batch, settle it.

Raw because enqueueing joins the event dispatcher's raw transaction, and the claim is FOR UPDATE
SKIP LOCKED inside a data-modifying UPDATE: senders in several worker processes take disjoint
batches without waiting on each other."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from lms.db.queries import Conn


async def enqueue(
    conn: Conn, rows: Sequence[tuple[uuid.UUID, uuid.UUID, str, dict[str, Any]]]
) -> int:
    """Queue (event id, statement id, event type, statement) rows; an event queued already is
    left as it is (a fan-out that ran twice queues nothing twice). The number queued."""
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


async def claim_due(conn: Conn, *, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Lease up to `limit` due statements, oldest first, to this sender."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        UPDATE xapi_statements x
        SET lease_until = now() + make_interval(secs => $2), attempts = x.attempts + 1
        FROM (
            SELECT event_id FROM xapi_statements
            WHERE status = 'PENDING' AND next_attempt_at <= now()
              AND (lease_until IS NULL OR lease_until < now())
            ORDER BY next_attempt_at, created_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE x.event_id = due.event_id
        RETURNING x.event_id, x.statement_id, x.event_type, x.statement, x.attempts
        """,
        limit,
        float(lease_seconds),
    )
    return rows


async def mark_sent(conn: Conn, event_ids: list[uuid.UUID]) -> None:
    await conn.execute(
        """
        UPDATE xapi_statements SET status = 'SENT', sent_at = now(), lease_until = NULL,
               last_error = NULL
        WHERE event_id = ANY($1::uuid[])
        """,
        event_ids,
    )


async def mark_retry(
    conn: Conn, event_ids: list[uuid.UUID], error: str, delay_seconds: float
) -> None:
    await conn.execute(
        """
        UPDATE xapi_statements SET last_error = $2, lease_until = NULL,
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
        UPDATE xapi_statements SET status = 'REJECTED', last_error = $2, lease_until = NULL
        WHERE event_id = $1
        """,
        event_id,
        error[:2000],
    )


async def seconds_until_next_due(conn: Conn) -> float | None:
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        SELECT greatest(
                   extract(epoch FROM min(greatest(next_attempt_at,
                                                   coalesce(lease_until, next_attempt_at)))
                                      - now()),
                   0)::float8
        FROM xapi_statements WHERE status = 'PENDING'
        """
    )


async def counts(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM xapi_statements GROUP BY status")
    return {row["status"]: int(row["n"]) for row in rows}


async def pending_count(conn: Conn) -> int:
    """The queue's depth (on the partial index of PENDING rows)."""
    return int(await conn.fetchval("SELECT count(*) FROM xapi_statements WHERE status = 'PENDING'"))


async def purge_sent(conn: Conn, older_than_seconds: int) -> str:
    """Forget statements the LRS has held for a while (it keeps them; a REJECTED one stays here
    for an operator to see)."""
    return str(
        await conn.execute(
            """
            DELETE FROM xapi_statements
            WHERE status = 'SENT' AND sent_at < now() - make_interval(secs => $1)
            """,
            float(older_than_seconds),
        )
    )
