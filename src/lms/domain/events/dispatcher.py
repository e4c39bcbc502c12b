"""Cuts the event log into ticks and tells its sinks what came: webhook endpoints, the xAPI
sender (each reads the log from its own place: lms.domain.events.cursor).

Every `lms worker` runs one (so integrations cost the workers' CPU, never the API's); a
transaction-scoped advisory lock lets one of them at a time cut a tick of the log and read on
from the dispatcher's place, hand the batch to every sink inside that transaction (the webhook
sink finds the endpoints it gives work to) and move its place past the batch. Either all sinks
have the batch or none has: a crash or an error in between rolls back and the next pass reads
the same events again. After commit each sink may wake its workers (a NATS JetStream publish);
if that fails the workers' own sweep finds the work in PostgreSQL. Nothing on the request path
waits for any of this: the request only inserted its event row, and nothing marks it
afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

import asyncpg

from lms.background import BackgroundTask
from lms.db.queries import event_cursors as cursors
from lms.db.queries import events as sql
from lms.domain.events import cursor
from lms.domain.events.cursor import Place
from lms.domain.events.log import Event
from lms.observability.metrics import EVENTS_DISPATCHED
from lms.observability.paced import PacedRefresh

log = logging.getLogger("lms.events")

BATCH = 500
# The dispatcher's place in the event log (event_cursors).
READER = "dispatch"
# Every this many ticks cut (a few a second under load), the ticks every reader has passed go.
FORGET_TICKS_EVERY = 1000
POLL_SECONDS = 0.5
# After a batch smaller than BATCH, the next pass waits this long: while requests keep adding
# events, a pass that started at once would find a handful, and every pass costs the same
# statements (the tick, the read, each sink's insert and wake-up, the move, and the
# deliverers' lease, read and settle behind it) whatever it carries. Gathering a fifth of a
# second's events makes that bookkeeping a cost per batch, not per event; a webhook waits at
# most this much longer.
GATHER_SECONDS = 0.2


class EventSink(Protocol):
    """Something that tells the outside world about events (webhooks, xAPI)."""

    name: str

    async def accept(self, conn: asyncpg.Connection, events: Sequence[Event], since: Place) -> None:
        """Take note of `events` (read after `since`, in the log's order; their `data` is not
        read: {}) on `conn`, inside the dispatcher's transaction: commit makes what it writes
        durable with the dispatcher's move past them. Raise to roll the whole batch back (it is
        read again)."""

    async def after_commit(self) -> None:
        """Wake whoever does the work (best effort: a failure is logged, the work waits in
        PostgreSQL for the workers' sweep)."""


class EventDispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sinks: Sequence[EventSink],
        *,
        poll_seconds: float = POLL_SECONDS,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self.pool = pool
        self.sinks = list(sinks)
        self.poll_seconds = poll_seconds
        self.gather_seconds = gather_seconds
        self._wake = asyncio.Event()
        self._task = BackgroundTask("lms-events")

    def wake(self, _payload: str = "") -> None:
        self._wake.set()

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        dispatched = 0
        while True:
            try:
                # While events keep coming the pre-check is skipped: it would find some.
                dispatched = await self.dispatch_once(look_first=not dispatched)
                if dispatched >= BATCH:
                    continue  # a backlog: take the next batch at once
                if dispatched:
                    await asyncio.sleep(self.gather_seconds)  # let the next batch gather
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down, a sink's bug: nothing is lost, retry
                log.warning("event dispatch failed: %s", exc)
                dispatched = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def dispatch_once(self, *, look_first: bool = True) -> int:
        """Fan out one batch; the number of events dispatched (0: none waiting, or another
        process is dispatching right now). `look_first`: ask whether anything waits before
        taking the dispatch lock (one cheap statement while there is nothing to do)."""
        if look_first and not await cursors.has_unread(self.pool, READER):
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            if not await sql.lock_dispatch(conn):
                return 0
            row = await cursors.place(conn, READER)
            if row is None:  # a new or emptied log
                await cursors.begin(conn, READER)
                row = await cursors.place(conn, READER)
                if row is None:  # begun just now, in this transaction: cannot be
                    raise RuntimeError("the dispatcher's place was not recorded")
            place, latest = Place.of(row), row["latest_tick"]
            if place.tick > latest:
                # Read all there is: cut the next tick (under the lock, so ticks follow their
                # snapshots' order).
                tick = await cursors.add_tick(conn)
                if tick is None:
                    return 0
                latest = tick
                if tick % FORGET_TICKS_EVERY == 0:
                    await cursors.forget_passed_ticks(conn, sql.LOG_KEEPS_SECONDS)
            # The sinks find whom to wake and wake them: they need each event's id, seq and
            # type, never its data (a sender reads that when it sends).
            batch = await cursor.read(conn, place, latest, BATCH, with_data=False)
            if batch.events:
                for sink in self.sinks:
                    await sink.accept(conn, batch.events, place)
            if batch.end != place:
                await cursors.move(conn, READER, batch.end.tick, batch.end.xid, batch.end.seq)
        if not batch.events:
            return 0
        EVENTS_DISPATCHED.inc(len(batch.events))
        for sink in self.sinks:
            try:
                await sink.after_commit()
            except Exception as exc:
                log.warning("event sink %s could not wake its workers: %s", sink.name, exc)
        return len(batch.events)


# This process's scrapes' counts of the event queues (lms.observability.paced: a long backlog
# is counted less often; between counts a scrape shows the last one).
_SCRAPE_COUNTS = PacedRefresh(0.0)


async def refresh_metrics(db: asyncpg.Pool) -> None:
    """The event queues' gauges, read when Prometheus scrapes /metrics: counts of the backlogs
    (cheap while the queues are short, paced when they are not)."""
    from lms.db.queries import webhooks as webhook_sql
    from lms.observability.metrics import EVENTS_UNDISPATCHED, WEBHOOK_QUEUE_DEPTH

    if not _SCRAPE_COUNTS.due():
        return
    # A scrape must not fail because the database is slow (the timeout is counted as the
    # count's cost: the next one waits a hundred times as long).
    with _SCRAPE_COUNTS.timed(), contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            EVENTS_UNDISPATCHED.set(await cursors.unread_count(db, READER))
            for endpoint_id, depth in (await webhook_sql.queue_depths(db)).items():
                WEBHOOK_QUEUE_DEPTH.labels(str(endpoint_id)).set(depth)
