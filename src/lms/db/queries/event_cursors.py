"""SQL for reading the event log by cursor: ticks (snapshots that cut the log into fixed sets) and
each reader's place in them (lms_0022 says why and how).

Tick T holds the events whose transaction is visible in T's snapshot and not in T-1's. A
reader's place (tick, after_xid, after_seq) means: every event of the ticks before `tick` is
read, and of `tick` those up to (after_xid, after_seq) in the index's order. A place at the tick
after the latest one waits for the next tick.

Raw because the dispatcher reads and moves its place inside its own raw transaction, and the
visibility tests are PostgreSQL functions on xid8 and pg_snapshot values."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from lms.db.queries import Conn

_TICK_EVENTS = "SELECT * FROM lms_tick_events($1, $2, $3, $4, $5)"
_TICK_EVENTS_DATA_TEXT = (
    "SELECT id, seq, xid, type, occurred_at, data::text AS data"
    " FROM lms_tick_events($1, $2, $3, $4, $5)"
)
_TICK_EVENTS_WITHOUT_DATA = (
    "SELECT id, seq, xid, type, occurred_at, NULL::jsonb AS data"
    " FROM lms_tick_events($1, $2, $3, $4, $5)"
)


async def tick_events(
    conn: Conn,
    tick: int,
    after_xid: int,
    after_seq: int,
    limit: int,
    types: Sequence[str] | None = None,
    *,
    with_data: bool = True,
    data_as_text: bool = False,
) -> list[asyncpg.Record]:
    """Up to `limit` events of `tick` after (after_xid, after_seq), of `types` when given, in
    (xid, seq) order (lms_tick_events, lms_0022: an index scan that stops after the page);
    without their data (None) for a reader that does not look at it, or with it as JSON text
    (`data_as_text`) for one that passes it on as it is."""
    rows: list[asyncpg.Record] = await conn.fetch(
        (_TICK_EVENTS_DATA_TEXT if data_as_text else _TICK_EVENTS)
        if with_data
        else _TICK_EVENTS_WITHOUT_DATA,
        tick,
        after_xid,
        after_seq,
        limit,
        None if types is None else list(types),
    )
    return rows


async def place(conn: Conn, name: str) -> asyncpg.Record | None:
    """A reader's place, its backoff, and the latest and oldest ticks (None: no such reader
    yet)."""
    return await conn.fetchrow(
        """
        SELECT c.tick, c.after_xid, c.after_seq, c.attempts, c.last_error,
               greatest(extract(epoch FROM c.next_attempt_at - now()), 0)::float8 AS wait_seconds,
               (SELECT max(id) FROM event_ticks) AS latest_tick,
               (SELECT min(id) FROM event_ticks) AS oldest_tick
        FROM event_cursors c WHERE c.name = $1
        """,
        name,
    )


async def begin(conn: Conn, name: str) -> None:
    """A log with no ticks gets its first (nothing visible: every event is after it), and the
    reader `name`, when it has no place, starts after the latest tick (what earlier ticks held
    was read before its place was lost). For a new or emptied log, and under the dispatcher's
    lock."""
    await conn.execute(
        "INSERT INTO event_ticks (id, snapshot) SELECT 0, '3:3:'"
        " WHERE NOT EXISTS (SELECT 1 FROM event_ticks)"
    )
    await conn.execute(
        "INSERT INTO event_cursors (name, tick) SELECT $1, max(id) + 1 FROM event_ticks"
        " ON CONFLICT (name) DO NOTHING",
        name,
    )


async def add_reader(conn: Conn, name: str, tick: int, after_xid: int, after_seq: int) -> None:
    """A new reader at the given place (a reader already there keeps its own)."""
    await conn.execute(
        """
        INSERT INTO event_cursors (name, tick, after_xid, after_seq) VALUES ($1, $2, $3, $4)
        ON CONFLICT (name) DO NOTHING
        """,
        name,
        tick,
        after_xid,
        after_seq,
    )


async def move(conn: Conn, name: str, tick: int, after_xid: int, after_seq: int) -> None:
    """The reader has what is up to its new place; a backoff it was in is over."""
    await conn.execute(
        """
        UPDATE event_cursors SET tick = $2, after_xid = $3, after_seq = $4, attempts = 0,
               last_error = NULL, next_attempt_at = now(), updated_at = now()
        WHERE name = $1
        """,
        name,
        tick,
        after_xid,
        after_seq,
    )


async def back_off(conn: Conn, name: str, error: str, delay_seconds: float) -> int:
    """The reader failed to pass on what is after its place: it waits `delay_seconds`; the
    number of failures in a row."""
    return int(
        await conn.fetchval(
            """
            UPDATE event_cursors SET attempts = attempts + 1, last_error = $2,
                   next_attempt_at = now() + make_interval(secs => $3), updated_at = now()
            WHERE name = $1
            RETURNING attempts
            """,
            name,
            error[:2000],
            delay_seconds,
        )
    )


async def add_tick(conn: Conn) -> int | None:
    """Cut a new tick when an event committed since the latest one; its id, or None. The caller
    serialises tick cutting (the dispatcher's lock), so ticks' ids follow their snapshots."""
    return await conn.fetchval(  # type: ignore[no-any-return]
        """
        INSERT INTO event_ticks (id, snapshot)
        SELECT t.id + 1, pg_current_snapshot()
        FROM (SELECT max(id) AS id FROM event_ticks) t
        WHERE lms_events_after_tick(t.id)
        RETURNING id
        """
    )


async def has_unread(conn: Conn, name: str) -> bool:
    """Whether the reader has anything to read: a tick past its place, or an event committed
    since the latest tick; for a reader with no place yet, any event (one cheap statement for
    an idle reader's poll)."""
    return bool(
        await conn.fetchval(
            """
            SELECT coalesce((
                SELECT k.tick <= t.id OR lms_events_after_tick(t.id)
                FROM event_cursors k, (SELECT max(id) AS id FROM event_ticks) t
                WHERE k.name = $1
            ), EXISTS (SELECT 1 FROM events))
            """,
            name,
        )
    )


async def unread_count(conn: Conn, name: str, types: Sequence[str] | None = None) -> int:
    """Events after the reader's place (of `types` when given), ticked or not yet: the depth of
    its queue. A reader with no place yet counts from the latest tick (where it would begin)."""
    count = await conn.fetchval(
        "SELECT lms_events_unread($1, $2)", name, None if types is None else list(types)
    )
    return int(count or 0)


async def forget_passed_ticks(conn: Conn, keep_seconds: float) -> None:
    """Ticks no reader needs any more (a reader at T reads T-1's snapshot). A webhook endpoint
    disabled for longer than `keep_seconds` keeps only the ticks that young, and the newest
    older one (the snapshot the first of them is read against): when it is enabled again its
    drain starts after the oldest tick left (cursor.read), as far back as the log keeps,
    instead of holding every tick since it was disabled."""
    await conn.execute(
        """
        WITH readers AS (
            SELECT c.tick, EXISTS (
                SELECT 1 FROM webhook_endpoints w
                WHERE c.name = 'webhook:' || w.id
                  AND w.disabled_at < now() - make_interval(secs => $1)) AS long_disabled
            FROM event_cursors c
        )
        DELETE FROM event_ticks t
        WHERE t.id < (SELECT min(tick) FROM readers WHERE NOT long_disabled) - 1
          AND (t.id < (SELECT min(tick) FROM readers) - 1
               OR t.id < (SELECT max(o.id) FROM event_ticks o
                          WHERE o.created_at < now() - make_interval(secs => $1)))
        """,
        float(keep_seconds),
    )
