"""Sinks read the event log through cursors: no write per event to say it was read.

Measured with two webhook endpoints and an LRS (bench/events.py, pg_stat_statements over a quick
events run): the delivery cost PostgreSQL 108 us of statement time per event. 15 us of it was
marking each event dispatched (an UPDATE per row, never HOT: dispatched_at is in the partial
index's predicate), 27 us was the xAPI queue: each statement inserted whole, read back and
deleted once the LRS took it. Both were bookkeeping for "this sink has read this event".

A cursor says the same once per batch. The catch is order: `seq` is taken when an event is
inserted, not when it commits, so "every event after seq N" misses an event with a smaller seq
that commits later. Cursors therefore walk ticks (the PgQ design): the dispatcher records
`pg_current_snapshot()` as a tick now and then, and tick T holds exactly the events whose
transaction is visible in T's snapshot and not in T-1's: a fixed set once T exists, whatever
commits later. Each event carries its transaction's id (`xid`, xid8, the default fills it); a
tick's events are read on the (xid, seq) index in that order, which keeps each transaction's
events in seq order and a later transaction after an earlier one it waited for. A transaction
still running at a tick is simply in a later tick: a long transaction delays only its own events.

- events.xid: NULL for events from before this migration that were already dispatched (no
  cursor reads them); the undispatched ones are put in tick 2 (xid 4); the events of xAPI
  statements still queued in tick 1 (xid 3), which only the xAPI cursor starts at.
- event_ticks: tick 0 (nothing visible) and tick 1 (xid 3 visible), then the dispatcher's.
- event_cursors: one row per reader ('dispatch': the webhook fan-out; 'xapi': the LRS), with the
  reader's place and, for the xAPI sender, its backoff.
- xapi_statements keeps only statements the LRS REJECTED (for an operator); queued ones are
  read from the log again (tick 1).

Backwards: dispatched_at comes back, NULL for events the dispatch cursor has not passed; xAPI
statements not yet sent are not queued again (they would be built from the log as before).
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-05T11:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Event cursors over snapshot ticks instead of per-event marks and queued statements"

STEPS: list[tuple[str, str]] = [
    (
        "ALTER TABLE events ADD COLUMN xid xid8",
        "ALTER TABLE events DROP COLUMN IF EXISTS xid",
    ),
    (
        "UPDATE events SET xid = '3' WHERE id IN (SELECT event_id FROM xapi_statements"
        " WHERE status = 'PENDING')",
        "SELECT 1",
    ),
    (
        "UPDATE events SET xid = '4' WHERE dispatched_at IS NULL",
        "SELECT 1",
    ),
    (
        "ALTER TABLE events ALTER COLUMN xid SET DEFAULT pg_current_xact_id()",
        "SELECT 1",
    ),
    (
        # A tick's events, in the order its readers take them.
        "CREATE INDEX events_by_xid ON events (xid, seq)",
        "DROP INDEX IF EXISTS events_by_xid",
    ),
    (
        "DROP INDEX IF EXISTS events_undispatched",
        "CREATE INDEX events_undispatched ON events (seq) WHERE dispatched_at IS NULL",
    ),
    (
        "ALTER TABLE events DROP COLUMN dispatched_at",
        "SELECT 1",  # re-added, with its values, by the last steps' backwards
    ),
    (
        """
        CREATE TABLE event_ticks (
            id bigint PRIMARY KEY,
            snapshot pg_snapshot NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        "DROP TABLE IF EXISTS event_ticks",
    ),
    (
        "INSERT INTO event_ticks (id, snapshot) VALUES (0, '3:3:'), (1, '4:4:')",
        "SELECT 1",
    ),
    (
        """
        CREATE TABLE event_cursors (
            name text PRIMARY KEY,
            tick bigint NOT NULL,
            after_xid xid8 NOT NULL DEFAULT '0',
            after_seq bigint NOT NULL DEFAULT 0,
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_error text,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        "DROP TABLE IF EXISTS event_cursors",
    ),
    (
        """
        INSERT INTO event_cursors (name, tick)
        SELECT 'dispatch', 2
        UNION ALL
        SELECT 'xapi', 1 WHERE EXISTS (SELECT 1 FROM xapi_statements WHERE status = 'PENDING')
        """,
        "SELECT 1",
    ),
    (
        # A tick's events after a place, in (xid, seq) order. A function for its SET clauses:
        # the planner cannot know how many events a tick holds, and guessing few it took a
        # bitmap scan of the rest of the tick and a sort (17 ms a page of 100 in a 27,000-event
        # tick, measured) where the index scan stops after the page (0.24 ms). jit off in these
        # functions: a plan with a path turned off looks dear enough to be compiled (160 ms).
        """
        CREATE FUNCTION lms_tick_events(p_tick bigint, p_xid xid8, p_seq bigint, p_limit int,
                                        p_types text[])
        RETURNS TABLE (id uuid, seq bigint, xid xid8, type text, occurred_at timestamptz,
                       data jsonb)
        LANGUAGE sql STABLE
        SET enable_bitmapscan = off SET enable_sort = off SET jit = off
        AS $$
            SELECT e.id, e.seq, e.xid, e.type, e.occurred_at, e.data FROM events e
            WHERE e.xid >= (SELECT pg_snapshot_xmin(t.snapshot) FROM event_ticks t
                            WHERE t.id = p_tick - 1)
              AND e.xid < (SELECT pg_snapshot_xmax(t.snapshot) FROM event_ticks t
                           WHERE t.id = p_tick)
              AND (e.xid, e.seq) > (p_xid, p_seq)
              AND pg_visible_in_snapshot(e.xid, (SELECT t.snapshot FROM event_ticks t
                                                 WHERE t.id = p_tick))
              AND NOT pg_visible_in_snapshot(e.xid, (SELECT t.snapshot FROM event_ticks t
                                                     WHERE t.id = p_tick - 1))
              AND (p_types IS NULL OR e.type = ANY (p_types))
            ORDER BY e.xid, e.seq
            LIMIT p_limit
        $$
        """,
        "DROP FUNCTION IF EXISTS lms_tick_events(bigint, xid8, bigint, int, text[])",
    ),
    (
        # Whether an event committed that tick p_tick does not hold (nor any before it): one
        # with a transaction id past the snapshot's xmax, or one of the transactions running
        # then. Both are index probes; "xid >= xmin and not visible" read as one range made
        # the planner scan the whole table for an answer that is mostly no (25 ms).
        """
        CREATE FUNCTION lms_events_after_tick(p_tick bigint) RETURNS boolean
        LANGUAGE sql STABLE
        SET enable_seqscan = off SET jit = off
        AS $$
            SELECT (SELECT max(e.xid) FROM events e) >= pg_snapshot_xmax(t.snapshot)
                OR EXISTS (SELECT 1 FROM events e
                           WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(t.snapshot))))
            FROM event_ticks t WHERE t.id = p_tick
        $$
        """,
        "DROP FUNCTION IF EXISTS lms_events_after_tick(bigint)",
    ),
    (
        # How many events are after reader p_name's place (of p_types when given): on the
        # index, from the oldest transaction its place can still be behind.
        """
        CREATE FUNCTION lms_events_unread(p_name text, p_types text[]) RETURNS bigint
        LANGUAGE sql STABLE
        SET enable_seqscan = off SET jit = off
        AS $$
            WITH k AS (SELECT tick, after_xid, after_seq FROM event_cursors WHERE name = p_name),
            base AS (
                SELECT coalesce(
                    (SELECT p.snapshot FROM k JOIN event_ticks p ON p.id = k.tick - 1),
                    (SELECT snapshot FROM event_ticks ORDER BY id DESC LIMIT 1),
                    '3:3:'::pg_snapshot
                ) AS s
            ),
            cur AS (
                SELECT c.snapshot AS s, k.after_xid, k.after_seq
                FROM k JOIN event_ticks c ON c.id = k.tick
            )
            SELECT count(*) FROM events e
            WHERE e.xid >= (SELECT pg_snapshot_xmin(base.s) FROM base)
              AND NOT pg_visible_in_snapshot(e.xid, (SELECT base.s FROM base))
              AND NOT coalesce((
                  SELECT pg_visible_in_snapshot(e.xid, cur.s)
                         AND (e.xid, e.seq) <= (cur.after_xid, cur.after_seq)
                  FROM cur), false)
              AND (p_types IS NULL OR e.type = ANY (p_types))
        $$
        """,
        "DROP FUNCTION IF EXISTS lms_events_unread(text, text[])",
    ),
    (
        # Each webhook endpoint reads the log from its own place, where the dispatcher was: the
        # events not dispatched yet are its to receive, as they were before.
        """
        INSERT INTO event_cursors (name, tick, after_xid, after_seq)
        SELECT 'webhook:' || w.id, c.tick, c.after_xid, c.after_seq
        FROM webhook_endpoints w, event_cursors c WHERE c.name = 'dispatch'
        """,
        "SELECT 1",
    ),
    (
        # A webhook delivery's id, from its endpoint and event: the same whether it is listed
        # before its first attempt, logged at its first outcome or queued after a failure. Its
        # first 48 bits are the event's time in milliseconds (the log's primary key grows at its
        # right edge), the rest a hash of the pair.
        """
        CREATE FUNCTION lms_delivery_id(p_endpoint uuid, p_event uuid, p_at timestamptz)
        RETURNS uuid
        LANGUAGE sql STABLE
        AS $$
            SELECT encode(set_bit(set_bit(overlay(
                decode(md5(p_endpoint::text || p_event::text), 'hex')
                PLACING substring(int8send(floor(extract(epoch FROM p_at) * 1000)::bigint) FROM 3)
                FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
        $$
        """,
        "DROP FUNCTION IF EXISTS lms_delivery_id(uuid, uuid, timestamptz)",
    ),
    (
        # The newest events after reader p_name's place (of p_types): a webhook endpoint's
        # deliveries not attempted yet, for its delivery log.
        """
        CREATE FUNCTION lms_unread_events(p_name text, p_types text[], p_limit int)
        RETURNS TABLE (id uuid, seq bigint, type text, occurred_at timestamptz)
        LANGUAGE sql STABLE
        SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off SET jit = off
        AS $$
            WITH k AS (SELECT tick, after_xid, after_seq FROM event_cursors WHERE name = p_name),
            base AS (SELECT p.snapshot AS s FROM k JOIN event_ticks p ON p.id = k.tick - 1),
            cur AS (
                SELECT c.snapshot AS s, k.after_xid, k.after_seq
                FROM k JOIN event_ticks c ON c.id = k.tick
            )
            SELECT e.id, e.seq, e.type, e.occurred_at FROM events e
            WHERE e.xid >= (SELECT pg_snapshot_xmin(base.s) FROM base)
              AND NOT pg_visible_in_snapshot(e.xid, (SELECT base.s FROM base))
              AND NOT coalesce((
                  SELECT pg_visible_in_snapshot(e.xid, cur.s)
                         AND (e.xid, e.seq) <= (cur.after_xid, cur.after_seq)
                  FROM cur), false)
              AND (p_types IS NULL OR e.type = ANY (p_types))
            ORDER BY e.xid DESC, e.seq DESC
            LIMIT p_limit
        $$
        """,
        "DROP FUNCTION IF EXISTS lms_unread_events(text, text[], int)",
    ),
    (
        "DELETE FROM xapi_statements WHERE status <> 'REJECTED'",
        # Backwards: what the dispatch cursor has passed is dispatched (while the ticks and
        # cursors are still there: the column is added by the step below's backward, first).
        """
        UPDATE events e SET dispatched_at = now()
        WHERE e.xid IS NULL OR pg_visible_in_snapshot(e.xid, (
            SELECT t.snapshot FROM event_ticks t, event_cursors c
            WHERE c.name = 'dispatch' AND t.id = c.tick - 1))
        """,
    ),
    (
        "SELECT 1",
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS dispatched_at timestamptz",
    ),
]


async def _run(statements: list[str]) -> None:
    for sql in statements:
        await Migration.raw(sql).run()


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="lms", description=DESCRIPTION)

    async def run_forwards() -> None:
        await _run([forward for forward, _ in STEPS])

    async def run_backwards() -> None:
        await _run([backward for _, backward in reversed(STEPS)])

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
