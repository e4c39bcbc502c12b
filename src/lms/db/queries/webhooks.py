"""SQL for webhook endpoints, their queues and their delivery log.

An endpoint reads the event log from its own place (event_cursors, lms_0022): what it has still
to receive is the events after its place, of the types it subscribes to, and its queue
(webhook_queue) holds only deliveries that failed at the head of the log or that an admin asked
to send again; the queue goes out first. The log (webhook_deliveries) gets a row at a delivery's
first outcome, the same row on every attempt after (its id is lms_delivery_id(endpoint, event,
event time): the same when it is listed before its first attempt). A delivery answered 2xx is
logged DELIVERED with the endpoint's move past it, one statement per batch. So a delivery that
succeeds at once costs one log row, written once; nothing is fanned out.

Raw because an endpoint's lease and backoff are conditional UPDATEs that decide races between
workers in the database, and a batch's log rows and the move of its place are one statement."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from lms.db.queries import Conn

# An endpoint's place in the event log (event_cursors.name), from its id in SQL (`w.id`).
READER_OF = "'webhook:' || w.id"
ENDPOINT = """id, url, events, description, created_at, updated_at, disabled_at, disabled_reason,
    failing_since, consecutive_failures, next_attempt_at, last_success_at"""
DELIVERY = """d.id, d.event_id, d.type, d.attempts, d.status, d.response_status, d.error,
    d.created_at, d.delivered_at, d.last_attempt_at"""


async def insert_endpoint(
    conn: Conn, *, url: str, events: list[str], description: str, secret: str
) -> asyncpg.Record:
    """The endpoint, and its place in the event log: after the latest tick, so every event not
    read by the dispatcher yet is its to receive (a log with no tick gets its first)."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        WITH w AS (
            INSERT INTO webhook_endpoints (url, events, description, secret)
            VALUES ($1, $2, $3, $4)
            RETURNING {ENDPOINT}, secret
        ), first_tick AS (
            INSERT INTO event_ticks (id, snapshot)
            SELECT 0, '3:3:' WHERE NOT EXISTS (SELECT 1 FROM event_ticks)
            ON CONFLICT (id) DO NOTHING
            RETURNING id
        ), reader AS (
            INSERT INTO event_cursors (name, tick)
            SELECT {READER_OF}, coalesce((SELECT max(id) FROM event_ticks),
                                         (SELECT max(id) FROM first_tick), 0) + 1
            FROM w
        )
        SELECT * FROM w
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


async def delete_endpoint(pool: asyncpg.Pool, endpoint_id: uuid.UUID) -> bool:
    """The endpoint with its queue, log and place in the event log (no foreign key does it:
    lms_0019), in one transaction; a deliverer on it finds its rows gone and settles nothing."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id)
        if status != "DELETE 1":
            return False
        await conn.execute("DELETE FROM webhook_queue WHERE endpoint_id = $1", endpoint_id)
        await conn.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = $1", endpoint_id)
        await conn.execute("DELETE FROM event_cursors WHERE name = $1", reader_of(endpoint_id))
        return True


def reader_of(endpoint_id: uuid.UUID) -> str:
    """The endpoint's place in the event log (event_cursors.name)."""
    return f"webhook:{endpoint_id}"


async def subscribed(conn: Conn, types: list[str]) -> list[uuid.UUID]:
    """The enabled endpoints subscribed to any of `types`: those a batch of events gives work."""
    rows = await conn.fetch(
        "SELECT id FROM webhook_endpoints WHERE disabled_at IS NULL AND events && $1::text[]",
        types,
    )
    return [r["id"] for r in rows]


async def lease(conn: Conn, endpoint_id: uuid.UUID, seconds: float) -> asyncpg.Record | None:
    """Take the endpoint for this worker while it is due and nobody holds it: deliveries to one
    endpoint go out one at a time, in event order."""
    return await conn.fetchrow(
        """
        UPDATE webhook_endpoints SET lease_until = now() + make_interval(secs => $2)
        WHERE id = $1 AND disabled_at IS NULL AND next_attempt_at <= now()
          AND (lease_until IS NULL OR lease_until < now())
        RETURNING id, url, secret, failing_since, events
        """,
        endpoint_id,
        seconds,
    )


async def release(conn: Conn, endpoint_id: uuid.UUID) -> None:
    await conn.execute("UPDATE webhook_endpoints SET lease_until = NULL WHERE id = $1", endpoint_id)


_PENDING = """
    SELECT q.delivery_id AS id, q.event_id, q.event_seq, q.attempts, q.type,
           e.occurred_at, e.data::text AS data_json
    FROM webhook_queue q JOIN events e ON e.id = q.event_id
    WHERE q.endpoint_id = $1 {after}
    ORDER BY q.event_seq
    LIMIT $2
"""
_PENDING_FROM_HEAD = _PENDING.format(after="")
_PENDING_AFTER = _PENDING.format(after="AND q.event_seq > $3")


async def pending(
    conn: Conn, endpoint_id: uuid.UUID, limit: int, after: int | None = None
) -> list[asyncpg.Record]:
    """The head of the endpoint's queue, in event order, with what its requests carry (the
    event's data as JSON text: it goes into the body as it is, never decoded); with
    `after`, the deliveries queued behind that event_seq. A drain reads on from where it is:
    from the head, the index scan steps over every delivery removed since the table was last
    vacuumed (73,000 in a bench run: 1.4 ms a page, a quarter of the delivery's database time)."""
    if after is None:
        rows: list[asyncpg.Record] = await conn.fetch(_PENDING_FROM_HEAD, endpoint_id, limit)
    else:
        rows = await conn.fetch(_PENDING_AFTER, endpoint_id, limit, after)
    return rows


async def delivered(
    conn: Conn,
    endpoint_id: uuid.UUID,
    event_seqs: list[int],
    response_statuses: list[int],
    delivered_at: list[datetime],
    lease_seconds: float,
) -> None:
    """Deliveries answered 2xx (each with its status and time) leave the endpoint's queue and
    are logged DELIVERED, in one statement; the endpoint's lease is renewed and its failure
    streak cleared."""
    await conn.execute(
        """
        WITH done AS (
            DELETE FROM webhook_queue q
            USING unnest($2::bigint[], $3::int[], $4::timestamptz[]) AS u(seq, status, at)
            WHERE q.endpoint_id = $1 AND q.event_seq = u.seq
            RETURNING q.delivery_id, q.endpoint_id, q.event_id, q.event_seq, q.type, q.attempts,
                      q.created_at, u.status, u.at
        ), logged AS (
            INSERT INTO webhook_deliveries AS d (id, endpoint_id, event_id, event_seq, type,
                status, attempts, response_status, created_at, last_attempt_at, delivered_at)
            SELECT delivery_id, endpoint_id, event_id, event_seq, type, 'DELIVERED',
                   attempts + 1, status, created_at, at, at
            FROM done
            ON CONFLICT (id) DO UPDATE SET status = 'DELIVERED', attempts = excluded.attempts,
                response_status = excluded.response_status, error = NULL,
                last_attempt_at = excluded.last_attempt_at, delivered_at = excluded.delivered_at
            RETURNING 1
        )
        UPDATE webhook_endpoints w
        SET failing_since = NULL, consecutive_failures = 0, last_success_at = now(),
            lease_until = now() + make_interval(secs => $5)
        WHERE w.id = $1 AND EXISTS (SELECT 1 FROM logged)
        """,
        endpoint_id,
        event_seqs,
        response_statuses,
        delivered_at,
        lease_seconds,
    )


async def delivered_from_log(
    conn: Conn,
    endpoint_id: uuid.UUID,
    deliveries: list[tuple[uuid.UUID, int, str, datetime, int, datetime]],
    place: tuple[int, int, int],
    lease_seconds: float,
) -> None:
    """Deliveries read from the event log and answered 2xx, each (event id, seq, type, event
    time, status, time), logged DELIVERED, and the endpoint's place moved past them, in one
    statement; the endpoint's lease is renewed and its failure streak cleared. With no
    deliveries it only moves the place (ticks that held nothing for the endpoint)."""
    await conn.execute(
        """
        WITH logged AS (
            INSERT INTO webhook_deliveries AS d (id, endpoint_id, event_id, event_seq, type,
                status, attempts, response_status, created_at, last_attempt_at, delivered_at)
            SELECT lms_delivery_id($1, u.id, u.occurred), $1, u.id, u.seq, u.type, 'DELIVERED',
                   1, u.status, u.occurred, u.at, u.at
            FROM unnest($2::uuid[], $3::bigint[], $4::text[], $5::timestamptz[], $6::int[],
                        $7::timestamptz[]) AS u(id, seq, type, occurred, status, at)
            ON CONFLICT (id) DO UPDATE SET status = 'DELIVERED', attempts = d.attempts + 1,
                response_status = excluded.response_status, error = NULL,
                last_attempt_at = excluded.last_attempt_at, delivered_at = excluded.delivered_at
            RETURNING 1
        ), moved AS (
            UPDATE event_cursors SET tick = $8, after_xid = $9, after_seq = $10,
                   updated_at = now()
            WHERE name = $11
            RETURNING 1
        )
        UPDATE webhook_endpoints w
        SET failing_since = NULL, consecutive_failures = 0, last_success_at = now(),
            lease_until = now() + make_interval(secs => $12)
        WHERE w.id = $1 AND EXISTS (SELECT 1 FROM logged)
          AND EXISTS (SELECT 1 FROM moved)
        """,
        endpoint_id,
        [d[0] for d in deliveries],
        [d[1] for d in deliveries],
        [d[2] for d in deliveries],
        [d[3] for d in deliveries],
        [d[4] for d in deliveries],
        [d[5] for d in deliveries],
        place[0],
        place[1],
        place[2],
        reader_of(endpoint_id),
        lease_seconds,
    )


async def park(
    conn: Conn,
    endpoint_id: uuid.UUID,
    event: tuple[uuid.UUID, int, str, datetime],
    place: tuple[int, int, int],
) -> None:
    """A delivery read from the event log that failed moves to the head of the endpoint's queue
    (event id, seq, type, event time), under the id it was listed with, and the endpoint's place
    moves past it: the queue goes out before anything after the place, so the order holds.
    In the caller's transaction, with `failed` after it."""
    await conn.execute(
        """
        INSERT INTO webhook_queue (endpoint_id, event_seq, event_id, delivery_id, type,
                                   created_at)
        VALUES ($1, $3, $2, lms_delivery_id($1, $2, $5), $4, $5)
        ON CONFLICT (endpoint_id, event_seq) DO NOTHING
        """,
        endpoint_id,
        *event,
    )
    await conn.execute(
        "UPDATE event_cursors SET tick = $2, after_xid = $3, after_seq = $4, updated_at = now()"
        " WHERE name = $1",
        reader_of(endpoint_id),
        *place,
    )


async def failed(
    conn: Conn,
    endpoint_id: uuid.UUID,
    event_seq: int,
    *,
    response_status: int | None,
    error: str,
    retry_in_seconds: float,
    disable_after_seconds: float,
) -> asyncpg.Record | None:
    """Count the failed attempt (the delivery stays at the head of the queue, logged PENDING
    with the reason); the endpoint waits `retry_in_seconds` (its whole queue: the order holds),
    or is disabled once it has failed for `disable_after_seconds`."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """
        WITH q AS (
            UPDATE webhook_queue SET attempts = attempts + 1
            WHERE endpoint_id = $1 AND event_seq = $2
            RETURNING delivery_id, endpoint_id, event_id, event_seq, type, attempts, created_at
        ), logged AS (
            INSERT INTO webhook_deliveries AS d (id, endpoint_id, event_id, event_seq, type,
                status, attempts, response_status, error, created_at, last_attempt_at)
            SELECT delivery_id, endpoint_id, event_id, event_seq, type, 'PENDING', attempts,
                   $3, $4, created_at, now()
            FROM q
            ON CONFLICT (id) DO UPDATE SET status = 'PENDING', attempts = excluded.attempts,
                response_status = excluded.response_status, error = excluded.error,
                last_attempt_at = excluded.last_attempt_at
            RETURNING d.endpoint_id
        )
        UPDATE webhook_endpoints w
        SET consecutive_failures = w.consecutive_failures + 1,
            failing_since = coalesce(w.failing_since, now()),
            next_attempt_at = now() + make_interval(secs => $5),
            lease_until = NULL,
            disabled_at = CASE WHEN w.failing_since < now() - make_interval(secs => $6)
                               THEN now() END,
            disabled_reason = CASE WHEN w.failing_since < now() - make_interval(secs => $6)
                THEN 'every delivery failed since ' || to_char(w.failing_since AT TIME ZONE 'UTC',
                     'YYYY-MM-DD"T"HH24:MI:SS"Z"') || ' (' || w.consecutive_failures + 1
                     || ' attempts); the last: ' || $4 END
        FROM logged WHERE w.id = logged.endpoint_id
        RETURNING w.id, w.consecutive_failures, w.disabled_at
        """,
        endpoint_id,
        event_seq,
        response_status,
        error[:1000],
        retry_in_seconds,
        disable_after_seconds,
    )
    return row


async def due_endpoints(conn: Conn, limit: int = 100) -> list[uuid.UUID]:
    """Endpoints with deliveries waiting that a worker could take now (the sweep's work): queued
    ones, or a tick of the log past their place."""
    rows = await conn.fetch(
        """
        SELECT w.id FROM webhook_endpoints w
        WHERE w.disabled_at IS NULL AND w.next_attempt_at <= now()
          AND (w.lease_until IS NULL OR w.lease_until < now())
          AND (EXISTS (SELECT 1 FROM webhook_queue q WHERE q.endpoint_id = w.id)
               OR EXISTS (SELECT 1 FROM event_cursors k
                          WHERE k.name = 'webhook:' || w.id
                            AND k.tick <= (SELECT max(id) FROM event_ticks)))
        ORDER BY w.next_attempt_at
        LIMIT $1
        """,
        limit,
    )
    return [r["id"] for r in rows]


async def queue_depths(conn: Conn) -> dict[uuid.UUID, int]:
    rows = await conn.fetch(
        """
        SELECT w.id, (SELECT count(*) FROM webhook_queue q WHERE q.endpoint_id = w.id)
                     + lms_events_unread('webhook:' || w.id, w.events) AS pending
        FROM webhook_endpoints w
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
    """The log, newest first, with the deliveries not attempted yet (PENDING, attempt 0: the
    events after the endpoint's place in the log, and queued ones; they have no log row until
    their first outcome, and keep the id they are listed with: lms_delivery_id)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT * FROM (
            SELECT {DELIVERY} FROM webhook_deliveries d WHERE d.endpoint_id = $1
            UNION ALL
            SELECT q.delivery_id, q.event_id, q.type, q.attempts, 'PENDING', NULL::integer,
                   NULL::text, q.created_at, NULL::timestamptz, NULL::timestamptz
            FROM webhook_queue q
            WHERE q.endpoint_id = $1 AND q.attempts = 0
              AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = q.delivery_id)
            UNION ALL
            SELECT lms_delivery_id($1, e.id, e.occurred_at), e.id, e.type, 0, 'PENDING',
                   NULL::integer, NULL::text, e.occurred_at, NULL::timestamptz,
                   NULL::timestamptz
            FROM webhook_endpoints w,
                 lms_unread_events('webhook:' || w.id, w.events, 100000) e
            WHERE w.id = $1
        ) d
        WHERE ($2::text IS NULL OR d.status = $2)
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


async def requeue(conn: Conn, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> str:
    """Send it again (a delivered one too: a replay), first in the endpoint's queue since the
    queue goes in event order; the endpoint is tried at once. "queued"; "unknown" (no such
    delivery of this endpoint); "gone" (its event is older than the log keeps)."""
    row = await conn.fetchrow(
        """
        WITH d AS (
            SELECT id, endpoint_id, event_id, event_seq, type, attempts, created_at
            FROM webhook_deliveries WHERE id = $2 AND endpoint_id = $1
        ), waiting AS (
            SELECT 1 FROM webhook_queue WHERE endpoint_id = $1 AND delivery_id = $2
            UNION ALL
            SELECT 1 FROM webhook_endpoints w,
                 lms_unread_events('webhook:' || w.id, w.events, 100000) e
            WHERE w.id = $1 AND lms_delivery_id($1, e.id, e.occurred_at) = $2
        ), queued AS (
            INSERT INTO webhook_queue
                (endpoint_id, event_seq, event_id, delivery_id, type, attempts, created_at)
            SELECT endpoint_id, event_seq, event_id, id, type, attempts, created_at FROM d
            WHERE EXISTS (SELECT 1 FROM events e WHERE e.id = d.event_id)
            ON CONFLICT (endpoint_id, event_seq) DO NOTHING
            RETURNING delivery_id
        ), marked AS (
            UPDATE webhook_deliveries x SET status = 'PENDING', delivered_at = NULL
            FROM queued WHERE x.id = queued.delivery_id
            RETURNING 1
        ), kicked AS (
            UPDATE webhook_endpoints SET next_attempt_at = now()
            WHERE id = $1
              AND (EXISTS (SELECT 1 FROM queued) OR EXISTS (SELECT 1 FROM waiting))
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM d) OR EXISTS (SELECT 1 FROM waiting) AS known,
               EXISTS (SELECT 1 FROM kicked) AS kicked,
               (SELECT count(*) FROM marked) AS marked
        """,
        endpoint_id,
        delivery_id,
    )
    if not row["known"]:
        return "unknown"
    return "queued" if row["kicked"] else "gone"
