"""SQL for the outbox of emails and SMS: enqueue in the caller's transaction, claim, settle.

Raw because enqueueing joins raw transactions (sign-up's), and the claim is FOR UPDATE SKIP LOCKED
inside a data-modifying UPDATE: several dispatchers take disjoint batches without waiting."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from lms.db.queries import Conn


async def enqueue(
    conn: Conn,
    *,
    channel: str,
    recipient: str,
    subject: str,
    body_text: str,
    body_html: str | None,
    purpose: str,
    expires_at: datetime | None,
    request_id: str | None,
) -> uuid.UUID:
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        INSERT INTO outbound_messages (channel, recipient, subject, body_text, body_html, purpose,
                                       expires_at, request_id)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        RETURNING id
        """,
        channel,
        recipient,
        subject,
        body_text,
        body_html,
        purpose,
        expires_at,
        request_id,
    )


async def claim_due(conn: Conn, *, limit: int, lease_seconds: int) -> list[asyncpg.Record]:
    """Lease up to `limit` due messages to this dispatcher; SKIP LOCKED lets every API process
    dispatch at once without sending anything twice."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        UPDATE outbound_messages m
        SET locked_until = now() + make_interval(secs => $2), attempts = m.attempts + 1
        FROM (
            SELECT id FROM outbound_messages
            WHERE status = 'PENDING' AND next_attempt_at <= now()
              AND (locked_until IS NULL OR locked_until < now())
            ORDER BY next_attempt_at
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE m.id = due.id
        RETURNING m.id, m.channel, m.recipient, m.subject, m.body_text, m.body_html, m.purpose,
                  m.attempts, m.request_id,
                  (m.expires_at IS NOT NULL AND m.expires_at <= now()) AS expired
        """,
        limit,
        float(lease_seconds),
    )
    return rows


async def mark_sent(conn: Conn, message_id: uuid.UUID) -> None:
    # The body may hold a one-time code: once delivered it has no business staying here.
    await conn.execute(
        """
        UPDATE outbound_messages SET status = 'SENT', sent_at = now(), locked_until = NULL,
               body_text = NULL, body_html = NULL, last_error = NULL
        WHERE id = $1
        """,
        message_id,
    )


async def mark_retry(conn: Conn, message_id: uuid.UUID, error: str, delay_seconds: float) -> None:
    await conn.execute(
        """
        UPDATE outbound_messages SET last_error = $2, locked_until = NULL,
               next_attempt_at = now() + make_interval(secs => $3)
        WHERE id = $1
        """,
        message_id,
        error[:2000],
        delay_seconds,
    )


async def mark_failed(conn: Conn, message_id: uuid.UUID, error: str) -> None:
    await conn.execute(
        """
        UPDATE outbound_messages SET status = 'FAILED', last_error = $2, locked_until = NULL,
               body_text = NULL, body_html = NULL
        WHERE id = $1
        """,
        message_id,
        error[:2000],
    )


async def seconds_until_next_due(conn: Conn) -> float | None:
    """Seconds until the next pending message may be sent (0: one may be now), None when
    nothing is pending. Not greatest(min(...), 0): greatest() skips a NULL, and an empty outbox
    would read as "due now" (an idle dispatcher then asked every 50 ms)."""
    wait: float | None = await conn.fetchval(
        """
        SELECT extract(epoch FROM min(greatest(next_attempt_at,
                                               coalesce(locked_until, next_attempt_at)))
                                  - now())::float8
        FROM outbound_messages WHERE status = 'PENDING'
        """
    )
    return None if wait is None else max(wait, 0.0)


async def purge_settled(conn: Conn, older_than_seconds: int) -> str:
    return str(
        await conn.execute(
            """
            DELETE FROM outbound_messages
            WHERE status <> 'PENDING' AND created_at < now() - make_interval(secs => $1)
            """,
            float(older_than_seconds),
        )
    )
