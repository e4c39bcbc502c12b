"""A tick's read starts its index scan at the tick, not at the oldest event in the log.

lms_tick_events bounded the (xid, seq) scan below twice: `xid >= the previous tick's xmin` and
`(xid, seq) > the reader's place`. A btree scan starts from one bound per column, and PostgreSQL
took the row comparison; at the start of a tick every reader's place is (0, 0), so the first
page of every tick walked the index from the oldest event the log keeps, rejecting each entry
until the tick's own. Four readers a tick (the dispatcher, two webhook endpoints, the xAPI
sender), a few ticks a second: at 1.5 million events in the log, 24 ms and 5,400 index pages
a read where the tick's own entries take 0.1 ms and 75 (bench events run, EXPLAIN ANALYZE), and
three quarters of the CPU of the delivery's PostgreSQL backends (perf, under load). The fix
folds both bounds into the one the scan starts from: the later of the place and the tick's
first transaction.

Backwards: the function as lms_0022 made it.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

ID = "2026-12-05T18:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "A tick's read starts its index scan at the tick"

_FORWARD_BODY = """
    SELECT e.id, e.seq, e.xid, e.type, e.occurred_at, e.data FROM events e
    -- One lower bound, the scan's start: past the place, and no earlier than the first
    -- transaction the previous tick did not see (a seq is never below 1).
    WHERE (e.xid, e.seq) > (
            greatest(p_xid, (SELECT pg_snapshot_xmin(t.snapshot) FROM event_ticks t
                             WHERE t.id = p_tick - 1)),
            CASE WHEN p_xid >= (SELECT pg_snapshot_xmin(t.snapshot) FROM event_ticks t
                                WHERE t.id = p_tick - 1)
                 THEN p_seq ELSE 0 END)
      AND e.xid < (SELECT pg_snapshot_xmax(t.snapshot) FROM event_ticks t WHERE t.id = p_tick)
      AND pg_visible_in_snapshot(e.xid, (SELECT t.snapshot FROM event_ticks t
                                         WHERE t.id = p_tick))
      AND NOT pg_visible_in_snapshot(e.xid, (SELECT t.snapshot FROM event_ticks t
                                             WHERE t.id = p_tick - 1))
      AND (p_types IS NULL OR e.type = ANY (p_types))
    ORDER BY e.xid, e.seq
    LIMIT p_limit
"""

_BACKWARD_BODY = """
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
"""


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


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="lms", description=DESCRIPTION)

    async def run_forwards() -> None:
        await Migration.raw(_tick_events(_FORWARD_BODY)).run()

    async def run_backwards() -> None:
        await Migration.raw(_tick_events(_BACKWARD_BODY)).run()

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
