"""SQL for webhook endpoints and deliveries.

Raw because the fan-out joins the dispatcher's raw transaction (one INSERT ... SELECT for a whole
batch of events), and an endpoint's lease and backoff are conditional UPDATEs that decide races
between workers in the database."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from lms.db.queries import Conn

ENDPOINT = """id, url, events, description, created_at, updated_at, disabled_at, disabled_reason,
    failing_since, consecutive_failures, next_attempt_at, last_success_at"""
DELIVERY = """d.id, d.event_id, d.type, d.attempts, d.status, d.response_status, d.error,
    d.created_at, d.delivered_at, d.last_attempt_at"""


async def insert_endpoint(
    conn: Conn, *, url: str, events: list[str], description: str, secret: str
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        INSERT INTO webhook_endpoints (url, events, description, secret)
        VALUES ($1, $2, $3, $4)
        RETURNING {ENDPOINT}, secret
        """,
        url,
        events,
        description,
        secret,
    )
    return row


async def endpoints(conn: Conn) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {ENDPOINT} FROM webhook_endpoints ORDER BY created_at, id"
    )
    return rows


async def endpoint(conn: Conn, endpoint_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT {ENDPOINT} FROM webhook_endpoints WHERE id = $1", endpoint_id
    )


async def update_endpoint(
    conn: Conn,
    endpoint_id: uuid.UUID,
    *,
    url: str | None,
    events: list[str] | None,
    description: str | None,
    enabled: bool | None,
) -> asyncpg.Record | None:
    """Enabling clears the failure record and tries at once; disabling by hand says so."""
    return await conn.fetchrow(
        f"""
        UPDATE webhook_endpoints SET
            url = coalesce($2, url),
            events = coalesce($3, events),
            description = coalesce($4, description),
            disabled_at = CASE WHEN $5::boolean IS NULL THEN disabled_at
                               WHEN $5 THEN NULL
                               ELSE coalesce(disabled_at, now()) END,
            disabled_reason = CASE WHEN $5::boolean IS NULL THEN disabled_reason
                                   WHEN $5 THEN NULL
                                   ELSE coalesce(disabled_reason, 'disabled by an admin') END,
            failing_since = CASE WHEN $5 THEN NULL ELSE failing_since END,
            consecutive_failures = CASE WHEN $5 THEN 0 ELSE consecutive_failures END,
            next_attempt_at = CASE WHEN $5 THEN now() ELSE next_attempt_at END,
            updated_at = now()
        WHERE id = $1
        RETURNING {ENDPOINT}
        """,
        endpoint_id,
        url,
        events,
        description,
        enabled,
    )


async def delete_endpoint(conn: Conn, endpoint_id: uuid.UUID) -> bool:
    status = await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return bool(status == "DELETE 1")


async def fan_out(
    conn: Conn, ids: list[uuid.UUID], seqs: list[int], types: list[str]
) -> list[uuid.UUID]:
    """A delivery per (enabled endpoint subscribed to its type, event); the endpoints that got
    any. An endpoint disabled now does not collect events meanwhile."""
    rows = await conn.fetch(
        """
        INSERT INTO webhook_deliveries (endpoint_id, event_id, event_seq, type)
        SELECT w.id, e.id, e.seq, e.type
        FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS e(id, seq, type)
        JOIN webhook_endpoints w ON e.type = ANY (w.events) AND w.disabled_at IS NULL
        ORDER BY w.id, e.seq
        ON CONFLICT (endpoint_id, event_id) DO NOTHING
        RETURNING endpoint_id
        """,
        ids,
        seqs,
        types,
    )
    return list({r["endpoint_id"] for r in rows})


async def lease(conn: Conn, endpoint_id: uuid.UUID, seconds: float) -> asyncpg.Record | None:
    """Take the endpoint for this worker while it is due and nobody holds it: deliveries to one
    endpoint go out one at a time, in event order."""
    return await conn.fetchrow(
        """
        UPDATE webhook_endpoints SET lease_until = now() + make_interval(secs => $2)
        WHERE id = $1 AND disabled_at IS NULL AND next_attempt_at <= now()
          AND (lease_until IS NULL OR lease_until < now())
        RETURNING id, url, secret, failing_since
        """,
        endpoint_id,
        seconds,
    )


async def release(conn: Conn, endpoint_id: uuid.UUID) -> None:
    await conn.execute("UPDATE webhook_endpoints SET lease_until = NULL WHERE id = $1", endpoint_id)


async def pending(conn: Conn, endpoint_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT d.id, d.event_id, d.attempts, e.type, e.occurred_at, e.data
        FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
        WHERE d.endpoint_id = $1 AND d.status = 'PENDING'
        ORDER BY d.event_seq
        LIMIT $2
        """,
        endpoint_id,
        limit,
    )
    return rows


async def delivered(
    conn: Conn,
    delivery_ids: list[uuid.UUID],
    response_statuses: list[int],
    delivered_at: list[datetime],
    lease_seconds: float,
) -> None:
    """Mark deliveries answered 2xx (each with its status and time), in one statement, and
    renew their endpoint's lease and clear its failure streak."""
    await conn.execute(
        """
        WITH d AS (
            UPDATE webhook_deliveries x
            SET status = 'DELIVERED', attempts = x.attempts + 1, response_status = u.status,
                error = NULL, last_attempt_at = u.at, delivered_at = u.at
            FROM unnest($1::uuid[], $2::int[], $3::timestamptz[]) AS u(id, status, at)
            WHERE x.id = u.id
            RETURNING x.endpoint_id
        )
        UPDATE webhook_endpoints w
        SET failing_since = NULL, consecutive_failures = 0, last_success_at = now(),
            lease_until = now() + make_interval(secs => $4)
        WHERE w.id IN (SELECT endpoint_id FROM d)
        """,
        delivery_ids,
        response_statuses,
        delivered_at,
        lease_seconds,
    )


async def failed(
    conn: Conn,
    delivery_id: uuid.UUID,
    *,
    response_status: int | None,
    error: str,
    retry_in_seconds: float,
    disable_after_seconds: float,
) -> asyncpg.Record | None:
    """Count the failed attempt; the endpoint waits `retry_in_seconds` (its whole queue: the
    order holds), or is disabled once it has failed for `disable_after_seconds`."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        WITH d AS (
            UPDATE webhook_deliveries
            SET attempts = attempts + 1, response_status = $2, error = $3,
                last_attempt_at = now()
            WHERE id = $1
            RETURNING endpoint_id
        )
        UPDATE webhook_endpoints w
        SET consecutive_failures = w.consecutive_failures + 1,
            failing_since = coalesce(w.failing_since, now()),
            next_attempt_at = now() + make_interval(secs => $4),
            lease_until = NULL,
            disabled_at = CASE WHEN w.failing_since < now() - make_interval(secs => $5)
                               THEN now() END,
            disabled_reason = CASE WHEN w.failing_since < now() - make_interval(secs => $5)
                THEN 'every delivery failed since ' || to_char(w.failing_since AT TIME ZONE 'UTC',
                     'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' (' || w.consecutive_failures + 1
                     || ' attempts); the last: ' || $3 END
        FROM d WHERE w.id = d.endpoint_id
        RETURNING w.id, w.consecutive_failures, w.disabled_at
        """,
        delivery_id,
        response_status,
        error[:1000],
        retry_in_seconds,
        disable_after_seconds,
    )
    return row


async def due_endpoints(conn: Conn, limit: int = 100) -> list[uuid.UUID]:
    """Endpoints with deliveries waiting that a worker could take now (the sweep's work)."""
    rows = await conn.fetch(
        """
        SELECT w.id FROM webhook_endpoints w
        WHERE w.disabled_at IS NULL AND w.next_attempt_at <= now()
          AND (w.lease_until IS NULL OR w.lease_until < now())
          AND EXISTS (SELECT 1 FROM webhook_deliveries d
                      WHERE d.endpoint_id = w.id AND d.status = 'PENDING')
        ORDER BY w.next_attempt_at
        LIMIT $1
        """,
        limit,
    )
    return [r["id"] for r in rows]


async def queue_depths(conn: Conn) -> dict[uuid.UUID, int]:
    rows = await conn.fetch(
        """
        SELECT w.id, count(d.id) AS pending
        FROM webhook_endpoints w
        LEFT JOIN webhook_deliveries d ON d.endpoint_id = w.id AND d.status = 'PENDING'
        GROUP BY w.id
        """
    )
    return {r["id"]: int(r["pending"]) for r in rows}


async def deliveries_page(
    conn: Conn,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {DELIVERY} FROM webhook_deliveries d
        WHERE d.endpoint_id = $1 AND ($2::text IS NULL OR d.status = $2)
          AND ($3::timestamptz IS NULL OR (d.created_at, d.id) < ($3, $4::uuid))
        ORDER BY d.created_at DESC, d.id DESC
        LIMIT $5
        """,
        endpoint_id,
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return rows


async def requeue(conn: Conn, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> bool:
    """Send it again (a delivered one too: a replay), first in the endpoint's queue since the
    queue goes in event order; the endpoint is tried at once."""
    status = await conn.execute(
        """
        WITH d AS (
            UPDATE webhook_deliveries SET status = 'PENDING', delivered_at = NULL
            WHERE id = $2 AND endpoint_id = $1
            RETURNING endpoint_id
        )
        UPDATE webhook_endpoints w SET next_attempt_at = now()
        FROM d WHERE w.id = d.endpoint_id
        """,
        endpoint_id,
        delivery_id,
    )
    return bool(status == "UPDATE 1")
