"""Readers of the event log (the dispatcher, the xAPI sender) find every committed event exactly
once, whatever order transactions commit in, and an open transaction holds up only its own
events."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import pytest

from lms.db.queries import event_cursors
from lms.domain.events.cursor import Place
from lms.domain.events.dispatcher import EventDispatcher
from lms.domain.events.log import Event, record_event


class Recorder:
    """A sink that remembers what it was handed, in order."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[uuid.UUID] = []

    async def accept(self, conn: asyncpg.Connection, events: Sequence[Event], since: Place) -> None:
        self.seen.extend(event.id for event in events)

    async def after_commit(self) -> None:
        return None


async def dispatch_all(dispatcher: EventDispatcher) -> None:
    while await dispatcher.dispatch_once():
        pass


def published() -> dict[str, uuid.UUID]:
    return {"courseId": uuid.uuid4()}


async def test_an_event_committed_after_later_ones_were_read_is_read_once(
    db: asyncpg.Pool,
) -> None:
    recorder = Recorder()
    dispatcher = EventDispatcher(db, [recorder])
    async with db.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        # Its seq is taken now, before the others': a cursor on seq alone would pass it by.
        late = await record_event(slow, "course.published", published())
        first = await record_event(db, "course.published", published())
        await dispatch_all(dispatcher)
        assert recorder.seen == [first]
        assert await event_cursors.unread_count(db, "dispatch") == 0  # `late` is not committed
        second = await record_event(db, "course.published", published())
        await dispatch_all(dispatcher)
        assert recorder.seen == [first, second]  # the open transaction holds up only itself
        await transaction.commit()
    assert await event_cursors.unread_count(db, "dispatch") == 1
    await dispatch_all(dispatcher)
    assert recorder.seen == [first, second, late]
    await dispatch_all(dispatcher)
    assert recorder.seen == [first, second, late]  # nothing twice


async def test_a_rolled_back_event_is_never_read(db: asyncpg.Pool) -> None:
    recorder = Recorder()
    dispatcher = EventDispatcher(db, [recorder])
    async with db.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await record_event(conn, "course.published", published())
        kept = await record_event(db, "course.published", published())
        await dispatch_all(dispatcher)
        await transaction.rollback()
    await dispatch_all(dispatcher)
    assert recorder.seen == [kept]
    assert await event_cursors.unread_count(db, "dispatch") == 0


async def test_a_batch_a_sink_refuses_is_read_again(db: asyncpg.Pool) -> None:
    """A sink raising rolls the dispatcher's move back with the batch: the next pass reads the
    same events (in the same order)."""

    class Flaky(Recorder):
        failures = 1

        async def accept(
            self, conn: asyncpg.Connection, events: Sequence[Event], since: Place
        ) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("the sink's database write failed")
            await super().accept(conn, events, since)

    flaky = Flaky()
    dispatcher = EventDispatcher(db, [flaky])
    ids = [await record_event(db, "course.published", published()) for _ in range(3)]
    with pytest.raises(RuntimeError, match="database write failed"):
        await dispatcher.dispatch_once()
    assert flaky.seen == []
    assert await event_cursors.unread_count(db, "dispatch") == 3
    await dispatch_all(dispatcher)
    assert flaky.seen == ids


async def test_a_backlog_larger_than_a_batch_is_read_in_pages_in_order(db: asyncpg.Pool) -> None:
    from lms.domain.events import dispatcher as dispatching

    recorder = Recorder()
    dispatcher = EventDispatcher(db, [recorder])
    ids = [await record_event(db, "course.published", published()) for _ in range(7)]
    original = dispatching.BATCH
    dispatching.BATCH = 3
    try:
        passes = 0
        while await dispatcher.dispatch_once():
            passes += 1
    finally:
        dispatching.BATCH = original
    assert recorder.seen == ids
    assert passes == 3  # 3 + 3 + 1


async def test_a_tick_with_a_late_committer_and_later_transactions_is_read_in_pages_in_order(
    db: asyncpg.Pool,
) -> None:
    """A tick holds the events of a transaction the tick before saw running (read by probing
    it) and those of later transactions (read as a range): read two at a time, across the two
    parts, each comes once, the running one's first (its transaction id is the smaller)."""
    from lms.domain.events import dispatcher as dispatching

    recorder = Recorder()
    dispatcher = EventDispatcher(db, [recorder])
    async with db.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        late = [await record_event(slow, "course.published", published()) for _ in range(3)]
        early = await record_event(db, "course.published", published())
        await dispatch_all(dispatcher)  # a tick that sees `slow` running
        assert recorder.seen == [early]
        after = [await record_event(db, "course.published", published()) for _ in range(3)]
        await transaction.commit()
    original = dispatching.BATCH
    dispatching.BATCH = 2
    try:
        await dispatch_all(dispatcher)
    finally:
        dispatching.BATCH = original
    assert recorder.seen == [early, *late, *after]


async def read_a_one_event_tick_after_20000_events(db: asyncpg.Pool) -> tuple[int, int]:
    """Read, from its start ((tick, 0, 0), where every reader begins each tick), a tick holding
    one event that follows 20,000 already read; the (xid, seq) index pages the read fetched,
    and how many transactions the tick before it saw running (any database's: transaction ids
    are the cluster's)."""
    await EventDispatcher(db, [Recorder()]).dispatch_once()  # the log's first tick
    async with db.acquire() as conn:
        # 20,000 earlier events (one transaction: quick to make), read by the dispatcher.
        await conn.execute(
            "INSERT INTO events (type, data) SELECT 'course.published', '{}'::jsonb"
            " FROM generate_series(1, 20000)"
        )
    await dispatch_all(EventDispatcher(db, [Recorder()]))
    later = await record_event(db, "course.published", published())
    async with db.acquire() as conn, conn.transaction():
        tick = await event_cursors.add_tick(conn)
        assert tick is not None
        running = await conn.fetchval(
            "SELECT count(*) FROM event_ticks t, pg_snapshot_xip(t.snapshot) WHERE t.id = $1",
            tick - 1,
        )
        index_blocks = "SELECT pg_stat_get_xact_blocks_fetched('events_by_xid'::regclass)"
        before = await conn.fetchval(index_blocks)
        rows = await event_cursors.tick_events(conn, tick, 0, 0, 10)
        fetched = await conn.fetchval(index_blocks) - before
    assert [r["id"] for r in rows] == [later]
    return fetched, running


async def test_a_ticks_first_page_starts_at_the_tick_not_at_the_start_of_the_log(
    db: asyncpg.Pool,
) -> None:
    """A tick's read walks the (xid, seq) index from the tick's first transaction, not from the
    oldest event: with the place as the scan's start key, every reader's first page of every
    tick read the whole log's index (24 ms and 5,000 pages at 1.5 million events, four readers
    a tick, under load)."""
    fetched, running = await read_a_one_event_tick_after_20000_events(db)
    # The 20,000 entries before it fill some 60 leaf pages; the tick's own read needs the
    # index's root, an inner page or two and its leaf, and a probe (root and leaf) for each
    # transaction the tick before saw running (other tests' ones, in other databases).
    assert fetched <= 6 + 3 * running, f"{fetched} index pages read for a one-event tick"


async def test_a_transaction_left_open_does_not_make_every_tick_read_the_log_since_it(
    db: asyncpg.Pool,
) -> None:
    """A transaction that began before the 20,000 events and is still open (a long import, a
    session left idle in a transaction, another database's writer: transaction ids are the
    cluster's) holds every later snapshot's xmin back. The read still starts at the tick: the
    transactions running at the tick before are probed one by one, the later ones read as a
    range from that tick's xmax (CI saw 78 pages: the whole index since the open one)."""
    async with db.acquire() as open_conn:
        transaction = open_conn.transaction()
        await transaction.start()
        await open_conn.fetchval("SELECT pg_current_xact_id()")  # it has a transaction id
        try:
            fetched, running = await read_a_one_event_tick_after_20000_events(db)
        finally:
            await transaction.rollback()
    assert running >= 1
    assert fetched <= 6 + 3 * running, f"{fetched} index pages read for a one-event tick"
