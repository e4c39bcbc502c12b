"""Fans the event log out to its sinks: webhook deliveries, xAPI statements.

Every `lms worker` runs one (so integrations cost the workers' CPU, never the API's); a
transaction-scoped advisory lock lets one of them at a time take a batch of undispatched
events, in `seq` order, hand it to every sink inside that transaction (each sink queues its
own work there: rows of its own table) and mark the events dispatched. Either all sinks have
the batch or none has: a crash or an error in between rolls back and the next pass takes the
same events again. After commit each sink may wake its workers (a NATS JetStream publish); if
that fails the workers' own sweep finds the work in PostgreSQL. Nothing on the request path
waits for any of this: the request only inserted its event row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

import asyncpg

from lms.background import BackgroundTask
from lms.db.queries import events as sql
from lms.domain.events.log import Event, event_of
from lms.observability.metrics import EVENTS_DISPATCHED

log = logging.getLogger("lms.events")

BATCH = 500
POLL_SECONDS = 0.5
# After a batch smaller than BATCH, the next pass waits this long: while requests keep adding
# events, a pass that started at once would find a handful, and every pass costs the same
# statements (the claim, each sink's insert and wake-up, the marking, and the deliverers' lease,
# read and settle behind it) whatever it carries. Gathering a fifth of a second's events makes
# that bookkeeping a cost per batch, not per event; a webhook waits at most this much longer.
GATHER_SECONDS = 0.2


class EventSink(Protocol):
    """Something that tells the outside world about events (webhooks, xAPI)."""

    name: str

    async def accept(self, conn: asyncpg.Connection, events: Sequence[Event]) -> None:
        """Queue the work for `events` (in `seq` order) on `conn`, inside the dispatcher's
        transaction: commit makes it durable with the events' dispatch mark. Raise to roll the
        whole batch back (it is retried)."""

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
        process is dispatching right now). `look_first`: ask whether any event waits before
        taking the dispatch lock (one cheap statement while there is nothing to do)."""
        if look_first and not await sql.any_undispatched(self.pool):
            return 0
        async with self.pool.acquire() as conn, conn.transaction():
            if not await sql.lock_dispatch(conn):
                return 0
            events = [event_of(row) for row in await sql.claim_undispatched(conn, BATCH)]
            if not events:
                return 0
            for sink in self.sinks:
                await sink.accept(conn, events)
            await sql.mark_dispatched(conn, [e.id for e in events])
        EVENTS_DISPATCHED.inc(len(events))
        for sink in self.sinks:
            try:
                await sink.after_commit()
            except Exception as exc:
                log.warning("event sink %s could not wake its workers: %s", sink.name, exc)
        return len(events)


async def refresh_metrics(db: asyncpg.Pool) -> None:
    """The event queues' gauges, read when Prometheus scrapes /metrics (two cheap queries)."""
    from lms.db.queries import webhooks as webhook_sql
    from lms.observability.metrics import EVENTS_UNDISPATCHED, WEBHOOK_QUEUE_DEPTH

    with contextlib.suppress(Exception):  # a scrape must not fail because the database is slow
        async with asyncio.timeout(1.0):
            EVENTS_UNDISPATCHED.set(await sql.undispatched_count(db))
            for endpoint_id, depth in (await webhook_sql.queue_depths(db)).items():
                WEBHOOK_QUEUE_DEPTH.labels(str(endpoint_id)).set(depth)
