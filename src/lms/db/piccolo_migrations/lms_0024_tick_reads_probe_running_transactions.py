"""A tick's read probes the transactions the previous tick saw running, then reads a range.

The events of tick T are those whose transaction is visible in T's snapshot and not in T-1's.
"Not visible in T-1's" is, by the snapshot's definition, "in T-1's list of running transactions
or at or past its xmax": nothing else can be. lms_0023 started the index scan at T-1's xmin and
rejected, entry by entry, every event of the transactions between xmin and xmax that T-1 saw
finished. xmin is the oldest transaction running anywhere in the cluster, so one transaction
left open (a long import, a session idle in a transaction, another database's writer) pinned
every later tick's xmin and made every reader's read of every tick walk the log since it: CI
measured 78 index pages for a one-event tick after 20,000 events, where 6 do.

Now a tick's read takes the candidates as they are defined: one index probe per transaction
T-1 saw running and T sees ended (a handful), then one range from the later of the reader's
place and T-1's xmax. The two parts are disjoint (the running ones are all below xmax) and
each is in (xid, seq) order, so a merge of the two stops after the page. The visibility tests
stay as they were: the new bounds only narrow what the scan looks at, never what it returns.

The backlog count (lms_events_unread, read when the gauges are scraped) counted from the same
xmin for the same reason; it counts the same candidates.

Backwards: both functions as lms_0023 left them.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-06T04:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "A tick's read probes the transactions the previous tick saw running"

# The event columns a tick's read returns, and what every candidate must satisfy: visible in
# the tick's snapshot, not in the previous one's, after the reader's place, of the types asked.
_COLUMNS = "e.id, e.seq, e.xid, e.type, e.occurred_at, e.data"
_IN_THE_TICK = """
          AND pg_visible_in_snapshot(e.xid, (SELECT t.snapshot FROM event_ticks t
                                             WHERE t.id = p_tick))
          AND NOT pg_visible_in_snapshot(e.xid, (SELECT t.snapshot FROM event_ticks t
                                                 WHERE t.id = p_tick - 1))
          AND (p_types IS NULL OR e.type = ANY (p_types))
"""

_FORWARD_TICK_EVENTS = f"""
    SELECT u.id, u.seq, u.xid, u.type, u.occurred_at, u.data FROM (
        -- Each part in order and limited itself: a UNION ALL's parts are planned on their own,
        -- and without it they took a sequential scan and the whole read was sorted.
        (
        -- The transactions the previous tick saw running and this one sees ended: an index
        -- probe each (one still running, however old, is not looked at).
        SELECT {_COLUMNS} FROM events e
        WHERE e.xid = ANY (ARRAY(
                SELECT x FROM pg_snapshot_xip((SELECT t.snapshot FROM event_ticks t
                                               WHERE t.id = p_tick - 1)) x
                WHERE x >= p_xid
                  AND pg_visible_in_snapshot(x, (SELECT t.snapshot FROM event_ticks t
                                                 WHERE t.id = p_tick))))
          AND (e.xid, e.seq) > (p_xid, p_seq)
          {_IN_THE_TICK}
        ORDER BY e.xid, e.seq
        LIMIT p_limit)
        UNION ALL
        (
        -- The transactions from its xmax on: one range, which starts at the later of the
        -- place and that xmax (one start key: a btree scan starts from one bound per column).
        SELECT {_COLUMNS} FROM events e
        WHERE (e.xid, e.seq) > (
                greatest(p_xid, (SELECT pg_snapshot_xmax(t.snapshot) FROM event_ticks t
                                 WHERE t.id = p_tick - 1)),
                CASE WHEN p_xid >= (SELECT pg_snapshot_xmax(t.snapshot) FROM event_ticks t
                                    WHERE t.id = p_tick - 1)
                     THEN p_seq ELSE 0 END)
          AND e.xid < (SELECT pg_snapshot_xmax(t.snapshot) FROM event_ticks t
                       WHERE t.id = p_tick)
          {_IN_THE_TICK}
        ORDER BY e.xid, e.seq
        LIMIT p_limit)
    ) u
    ORDER BY u.xid, u.seq
    LIMIT p_limit
"""  # noqa: S608 - fixed text

_BACKWARD_TICK_EVENTS = f"""
    SELECT {_COLUMNS} FROM events e
    -- One lower bound, the scan's start: past the place, and no earlier than the first
    -- transaction the previous tick did not see (a seq is never below 1).
    WHERE (e.xid, e.seq) > (
            greatest(p_xid, (SELECT pg_snapshot_xmin(t.snapshot) FROM event_ticks t
                             WHERE t.id = p_tick - 1)),
            CASE WHEN p_xid >= (SELECT pg_snapshot_xmin(t.snapshot) FROM event_ticks t
                                WHERE t.id = p_tick - 1)
                 THEN p_seq ELSE 0 END)
      AND e.xid < (SELECT pg_snapshot_xmax(t.snapshot) FROM event_ticks t WHERE t.id = p_tick)
      {_IN_THE_TICK}
    ORDER BY e.xid, e.seq
    LIMIT p_limit
"""  # noqa: S608 - fixed text


def _tick_events(body: str) -> str:
    """lms_tick_events with `body` (one of this file's constants)."""
    return f"""
CREATE OR REPLACE FUNCTION lms_tick_events(p_tick bigint, p_xid xid8, p_seq bigint,
                                           p_limit int, p_types text[])
RETURNS TABLE (id uuid, seq bigint, xid xid8, type text, occurred_at timestamptz, data jsonb)
LANGUAGE sql STABLE
SET enable_bitmapscan = off SET enable_sort = off SET jit = off
AS $$ {body} $$
"""


# The backlog's candidates: the transactions running at the tick before the reader's (probes)
# and those from its xmax on (a range); lms_0022 counted from its xmin.
_FORWARD_UNREAD_CANDIDATES = """
              (e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(base.s) FROM base))
               OR e.xid >= (SELECT pg_snapshot_xmax(base.s) FROM base))
"""
_BACKWARD_UNREAD_CANDIDATES = """
              e.xid >= (SELECT pg_snapshot_xmin(base.s) FROM base)
"""


def _events_unread(candidates: str) -> str:
    """lms_events_unread counting `candidates` (one of this file's constants)."""
    return f"""
CREATE OR REPLACE FUNCTION lms_events_unread(p_name text, p_types text[]) RETURNS bigint
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
    WHERE {candidates}
      AND NOT pg_visible_in_snapshot(e.xid, (SELECT base.s FROM base))
      AND NOT coalesce((
          SELECT pg_visible_in_snapshot(e.xid, cur.s)
                 AND (e.xid, e.seq) <= (cur.after_xid, cur.after_seq)
          FROM cur), false)
      AND (p_types IS NULL OR e.type = ANY (p_types))
$$
"""  # noqa: S608 - fixed text


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="lms", description=DESCRIPTION)

    async def run_forwards() -> None:
        await Migration.raw(_tick_events(_FORWARD_TICK_EVENTS)).run()
        await Migration.raw(_events_unread(_FORWARD_UNREAD_CANDIDATES)).run()

    async def run_backwards() -> None:
        await Migration.raw(_tick_events(_BACKWARD_TICK_EVENTS)).run()
        await Migration.raw(_events_unread(_BACKWARD_UNREAD_CANDIDATES)).run()

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
