"""A tick's read probes the transactions the previous tick saw running, then reads a range;
the log's hot functions keep their plans.

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
The backlog's count and the delivery log's list of what an endpoint has not been sent
(lms_events_unread, lms_unread_events) scanned from the same xmin; they take the same
candidates.

The read and the "anything after this tick?" test every reader's poll makes
(lms_events_after_tick) were SQL functions, and PostgreSQL parses and plans an SQL function's
body on every call: 330-800 us of a 90 us read of one event, 167 of a 33 us test (a loop of
calls in the server, bench database). They are PL/pgSQL now, with the plan made once per
connection (plan_cache_mode = force_generic_plan: the plan does not depend on the arguments,
and the SET clauses that keep it on the index apply when it is made).

Backwards: the functions as lms_0022 and lms_0023 left them.
"""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.apps.migrations.tables import Migration

from lms.db.piccolo_migrations.lms_0023_tick_reads_start_at_the_tick import (
    _FORWARD_BODY as LMS_0023_TICK_EVENTS_BODY,
)
from lms.db.piccolo_migrations.lms_0023_tick_reads_start_at_the_tick import (
    _tick_events as lms_0023_tick_events,
)

ID = "2026-12-06T04:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "A tick's read probes the transactions the previous tick saw running"

# What every event a tick's read returns must be: visible in the tick's snapshot, not in the
# previous one's, of the types asked.
_IN_THE_TICK = """
          AND pg_visible_in_snapshot(e.xid, (SELECT t.snapshot FROM event_ticks t
                                             WHERE t.id = p_tick))
          AND NOT pg_visible_in_snapshot(e.xid, (SELECT t.snapshot FROM event_ticks t
                                                 WHERE t.id = p_tick - 1))
          AND (p_types IS NULL OR e.type = ANY (p_types))
"""
_COLUMNS = "e.id, e.seq, e.xid, e.type, e.occurred_at, e.data"

TICK_EVENTS = f"""
CREATE OR REPLACE FUNCTION lms_tick_events(p_tick bigint, p_xid xid8, p_seq bigint,
                                           p_limit int, p_types text[])
RETURNS TABLE (id uuid, seq bigint, xid xid8, type text, occurred_at timestamptz, data jsonb)
LANGUAGE plpgsql STABLE
SET enable_bitmapscan = off SET enable_sort = off SET jit = off
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
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
    LIMIT p_limit;
END
$$
"""  # noqa: S608 - fixed text

_AFTER_TICK_BODY = """
            SELECT (SELECT max(e.xid) FROM events e) >= pg_snapshot_xmax(t.snapshot)
                OR EXISTS (SELECT 1 FROM events e
                           WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(t.snapshot))))
            FROM event_ticks t WHERE t.id = p_tick
"""

EVENTS_AFTER_TICK = f"""
CREATE OR REPLACE FUNCTION lms_events_after_tick(p_tick bigint) RETURNS boolean
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET jit = off SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN ({_AFTER_TICK_BODY});
END
$$
"""

LMS_0022_EVENTS_AFTER_TICK = f"""
CREATE OR REPLACE FUNCTION lms_events_after_tick(p_tick bigint) RETURNS boolean
LANGUAGE sql STABLE
SET enable_seqscan = off SET jit = off
AS $$ {_AFTER_TICK_BODY} $$
"""

# A reader's unread events: those of the transactions the tick before its tick (`base`) saw
# running or that began after it, less those it has passed in its tick (`cur`). The count
# falls back to the latest tick for a reader with no place yet (where it would start).
_READER = """
    WITH k AS (SELECT tick, after_xid, after_seq FROM event_cursors WHERE name = p_name),
    base AS ({base}),
    cur AS (
        SELECT c.snapshot AS s, k.after_xid, k.after_seq
        FROM k JOIN event_ticks c ON c.id = k.tick
    )
"""
_BASE = "SELECT p.snapshot AS s FROM k JOIN event_ticks p ON p.id = k.tick - 1"
_BASE_OR_LATEST = """
        SELECT coalesce(
            (SELECT p.snapshot FROM k JOIN event_ticks p ON p.id = k.tick - 1),
            (SELECT snapshot FROM event_ticks ORDER BY id DESC LIMIT 1),
            '3:3:'::pg_snapshot
        ) AS s
"""
_UNREAD = """
      AND NOT pg_visible_in_snapshot(e.xid, (SELECT base.s FROM base))
      AND NOT coalesce((
          SELECT pg_visible_in_snapshot(e.xid, cur.s)
                 AND (e.xid, e.seq) <= (cur.after_xid, cur.after_seq)
          FROM cur), false)
      AND (p_types IS NULL OR e.type = ANY (p_types))
"""


def _events_unread(candidates: str) -> str:
    """lms_events_unread counting the unread events among `candidates` (a condition on e)."""
    return f"""
CREATE OR REPLACE FUNCTION lms_events_unread(p_name text, p_types text[]) RETURNS bigint
LANGUAGE sql STABLE
SET enable_seqscan = off SET jit = off
AS $$
    {_READER.format(base=_BASE_OR_LATEST)}
    SELECT count(*) FROM events e
    WHERE {candidates}
    {_UNREAD}
$$
"""  # noqa: S608 - fixed text


def _unread_events(body: str) -> str:
    """lms_unread_events with `body` (the query after the reader's WITH)."""
    return f"""
CREATE OR REPLACE FUNCTION lms_unread_events(p_name text, p_types text[], p_limit int)
RETURNS TABLE (id uuid, seq bigint, type text, occurred_at timestamptz)
LANGUAGE sql STABLE
SET enable_seqscan = off SET enable_sort = off SET enable_bitmapscan = off SET jit = off
AS $$
    {_READER.format(base=_BASE)}
    {body}
$$
"""


EVENTS_UNREAD = _events_unread(
    """(e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(base.s) FROM base))
           OR e.xid >= (SELECT pg_snapshot_xmax(base.s) FROM base))"""
)
LMS_0022_EVENTS_UNREAD = _events_unread("e.xid >= (SELECT pg_snapshot_xmin(base.s) FROM base)")

# The newest first: the range from the base tick's xmax, then the transactions it saw running.
UNREAD_EVENTS = _unread_events(
    f"""
    SELECT u.id, u.seq, u.type, u.occurred_at FROM (
        (SELECT e.id, e.seq, e.xid, e.type, e.occurred_at FROM events e
         WHERE e.xid >= (SELECT pg_snapshot_xmax(base.s) FROM base)
         {_UNREAD}
         ORDER BY e.xid DESC, e.seq DESC
         LIMIT p_limit)
        UNION ALL
        (SELECT e.id, e.seq, e.xid, e.type, e.occurred_at FROM events e
         WHERE e.xid = ANY (ARRAY(SELECT pg_snapshot_xip(base.s) FROM base))
         {_UNREAD}
         ORDER BY e.xid DESC, e.seq DESC
         LIMIT p_limit)
    ) u
    ORDER BY u.xid DESC, u.seq DESC
    LIMIT p_limit
"""  # noqa: S608 - fixed text
)
LMS_0022_UNREAD_EVENTS = _unread_events(
    f"""
    SELECT e.id, e.seq, e.type, e.occurred_at FROM events e
    WHERE e.xid >= (SELECT pg_snapshot_xmin(base.s) FROM base)
    {_UNREAD}
    ORDER BY e.xid DESC, e.seq DESC
    LIMIT p_limit
"""  # noqa: S608 - fixed text
)

FORWARDS = [TICK_EVENTS, EVENTS_AFTER_TICK, EVENTS_UNREAD, UNREAD_EVENTS]
# CREATE OR REPLACE may change a function's language: the SQL functions come back as they were.
BACKWARDS = [
    lms_0023_tick_events(LMS_0023_TICK_EVENTS_BODY),
    LMS_0022_EVENTS_AFTER_TICK,
    LMS_0022_EVENTS_UNREAD,
    LMS_0022_UNREAD_EVENTS,
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="lms", description=DESCRIPTION)

    async def run_forwards() -> None:
        for statement in FORWARDS:
            await Migration.raw(statement).run()

    async def run_backwards() -> None:
        for statement in BACKWARDS:
            await Migration.raw(statement).run()

    manager.add_raw(run_forwards)
    manager.add_raw_backwards(run_backwards)
    return manager
