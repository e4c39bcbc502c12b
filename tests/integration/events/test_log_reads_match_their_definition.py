"""The log's reads (a tick's events, a reader's unread count and its newest unread events) return
what their definitions say, whatever order transactions begin, write, commit or roll back in,
and however long one stays open: each is checked, step by step, against its definition written
as a plain query with no bound for an index to start from. The functions bound their index
scans (a probe per transaction the previous tick saw running, a range from its xmax), and a
bound that is one transaction off loses or repeats events only in such interleavings."""

from __future__ import annotations

import random
import uuid

import asyncpg
import pytest

from lms.db.queries import event_cursors
from lms.domain.events.cursor import Place, read

TYPES = ("course.published", "lesson.completed")
READERS = {"all": None, "lessons": ["lesson.completed"]}

DEFINED_TICK = """
SELECT e.id FROM events e
WHERE pg_visible_in_snapshot(e.xid, (SELECT snapshot FROM event_ticks WHERE id = $1))
  AND NOT pg_visible_in_snapshot(e.xid, (SELECT snapshot FROM event_ticks WHERE id = $1 - 1))
  AND (e.xid, e.seq) > ($2::xid8, $3::bigint)
  AND ($5::text[] IS NULL OR e.type = ANY ($5))
ORDER BY e.xid, e.seq
LIMIT $4
"""

DEFINED_UNREAD = """
SELECT e.id FROM events e, event_cursors k
LEFT JOIN event_ticks b ON b.id = k.tick - 1
LEFT JOIN event_ticks c ON c.id = k.tick
WHERE k.name = $1
  AND NOT pg_visible_in_snapshot(e.xid, b.snapshot)
  AND NOT coalesce(pg_visible_in_snapshot(e.xid, c.snapshot)
                   AND (e.xid, e.seq) <= (k.after_xid, k.after_seq), false)
  AND ($2::text[] IS NULL OR e.type = ANY ($2))
ORDER BY e.xid DESC, e.seq DESC
"""


async def add_event(conn: asyncpg.Connection | asyncpg.Pool, kind: str) -> uuid.UUID:
    event_id: uuid.UUID = await conn.fetchval(
        "INSERT INTO events (type, data) VALUES ($1, '{}'::jsonb) RETURNING id", kind
    )
    return event_id


class Interleaving:
    """Side transactions, writes, ticks and readers' reads in a random order, checked after
    every step."""

    def __init__(self, db: asyncpg.Pool, check: asyncpg.Connection, seed: int) -> None:
        self.db = db
        self.check = check
        self.random = random.Random(seed)
        self.side: list[tuple[asyncpg.Connection, asyncpg.transaction.Transaction | None]] = []
        self.pending: dict[int, list[uuid.UUID]] = {}  # a side's events, not committed yet
        self.committed: set[uuid.UUID] = set()
        self.read_by: dict[str, list[uuid.UUID]] = {name: [] for name in READERS}

    async def start(self, sides: int) -> None:
        async with self.db.acquire() as conn:
            for name in READERS:
                await event_cursors.begin(conn, name)
        for _ in range(sides):
            self.side.append((await self.db.acquire(), None))

    async def stop(self) -> None:
        for index in range(len(self.side)):
            await self.end(index, commit=True)
            await self.db.release(self.side[index][0])

    async def end(self, index: int, *, commit: bool) -> None:
        conn, transaction = self.side[index]
        if transaction is None:
            return
        if commit:
            await transaction.commit()
            self.committed.update(self.pending.get(index, []))
        else:
            await transaction.rollback()
        self.pending[index] = []
        self.side[index] = (conn, None)

    async def step(self) -> None:
        index = self.random.randrange(len(self.side))
        conn, transaction = self.side[index]
        action = self.random.choice(
            ["open", "write", "write", "end", "autocommit", "tick", "tick", "read", "read"]
        )
        if action == "open" and transaction is None:
            transaction = conn.transaction()
            await transaction.start()
            self.side[index] = (conn, transaction)
            if self.random.random() < 0.5:  # a transaction id before any event, or none
                await conn.fetchval("SELECT pg_current_xact_id()")
        elif action == "write" and transaction is not None:
            kind = self.random.choice(TYPES)
            self.pending.setdefault(index, []).append(await add_event(conn, kind))
        elif action == "end":
            await self.end(index, commit=self.random.random() < 0.8)
        elif action == "autocommit":
            self.committed.add(await add_event(self.db, self.random.choice(TYPES)))
        elif action == "tick":
            async with self.db.acquire() as tick_conn:
                await event_cursors.add_tick(tick_conn)
        elif action == "read":
            await self.read(self.random.choice(list(READERS)), self.random.randint(1, 3))

    async def read(self, name: str, limit: int) -> None:
        async with self.db.acquire() as conn, conn.transaction():
            row = await event_cursors.place(conn, name)
            assert row is not None
            batch = await read(conn, Place.of(row), row["latest_tick"], limit, READERS[name])
            await event_cursors.move(conn, name, batch.end.tick, batch.end.xid, batch.end.seq)
        self.read_by[name].extend(event.id for event in batch.events)

    async def agree(self) -> None:
        """Every function against its definition, at each reader's place and at the start of
        the latest ticks."""
        latest = await self.check.fetchval("SELECT max(id) FROM event_ticks")
        places = [Place(tick) for tick in range(max(1, latest - 3), latest + 1)]
        for name, types in READERS.items():
            row = await event_cursors.place(self.check, name)
            assert row is not None
            places.append(Place.of(row))
            unread = [r["id"] for r in await self.check.fetch(DEFINED_UNREAD, name, types)]
            assert await event_cursors.unread_count(self.check, name, types) == len(unread)
            listed = await self.check.fetch(
                "SELECT id FROM lms_unread_events($1, $2, 4)", name, types
            )
            assert [r["id"] for r in listed] == unread[:4]
        for place in places:
            if place.tick > latest:
                continue
            for types in READERS.values():
                for limit in (1, 3):
                    defined = await self.check.fetch(
                        DEFINED_TICK, place.tick, place.xid, place.seq, limit, types
                    )
                    got = await event_cursors.tick_events(
                        self.check, place.tick, place.xid, place.seq, limit, types
                    )
                    assert [r["id"] for r in got] == [r["id"] for r in defined], place


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_logs_reads_match_their_definitions_in_any_interleaving(
    db: asyncpg.Pool, seed: int
) -> None:
    async with db.acquire() as check:
        run = Interleaving(db, check, seed)
        await run.start(sides=3)
        try:
            for _ in range(120):
                await run.step()
                await run.agree()
        finally:
            await run.stop()
        async with db.acquire() as conn:
            await event_cursors.add_tick(conn)
        await run.agree()
        for name in READERS:
            await run.read(name, 10_000)
        kinds = dict(await check.fetch("SELECT id, type FROM events"))
        for name, types in READERS.items():
            wanted = {i for i in run.committed if types is None or kinds[i] in types}
            assert sorted(run.read_by[name]) == sorted(wanted), name  # each once, none lost
