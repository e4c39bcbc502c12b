"""The search limit (lms.domain.rate_limits.BatchedLimit): decided in memory, counted in the
shared counters in aggregate, so a search writes nothing of its own."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from lms.domain.errors import TooMany
from lms.domain.rate_limits import BatchedLimit

KEY = "ip:search:192.0.2.7"


async def hits(db: asyncpg.Pool) -> int | None:
    value: int | None = await db.fetchval(
        "SELECT hits FROM rate_limit_counters WHERE key = $1", f"{KEY}:60"
    )
    return value


async def test_one_process_counts_exactly_and_writes_in_aggregate(db: asyncpg.Pool) -> None:
    limit = BatchedLimit(60, interval=3600)  # flushed by hand below
    for _ in range(5):
        limit.take(db, f"{KEY}:60", 5, "searches", label="search")
    assert await hits(db) is None  # nothing written per hit
    with pytest.raises(TooMany) as refused:
        limit.take(db, f"{KEY}:60", 5, "searches", label="search")
    assert 1 <= refused.value.retry_after <= 60
    await limit.flush()
    assert await hits(db) == 5  # one statement for the five, the refusal not counted


async def test_processes_share_their_counts_at_each_flush(db: asyncpg.Pool) -> None:
    one, two = BatchedLimit(60, interval=3600), BatchedLimit(60, interval=3600)
    for _ in range(3):
        one.take(db, f"{KEY}:60", 5, "searches", label="search")
    await one.flush()
    # The second process learns the shared count at its first flush; before it, it admits on
    # its own count (the bound: what others admitted within one flush interval).
    two.take(db, f"{KEY}:60", 5, "searches", label="search")
    await two.flush()
    assert await hits(db) == 4
    two.take(db, f"{KEY}:60", 5, "searches", label="search")
    with pytest.raises(TooMany):
        two.take(db, f"{KEY}:60", 5, "searches", label="search")
    await two.flush()
    await one.flush()
    assert await hits(db) == 5


async def test_the_flusher_runs_by_itself(db: asyncpg.Pool) -> None:
    limit = BatchedLimit(60, interval=0.05)
    limit.take(db, f"{KEY}:60", 5, "searches", label="search")
    for _ in range(200):
        if await hits(db) == 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the hit never reached the shared counter")


async def test_hits_being_written_still_count_while_the_write_waits(db: asyncpg.Pool) -> None:
    """A flush hands its pending hits to PostgreSQL: until the totals come back, those hits are
    neither pending nor in the shared count it knows, and must still count (a search admitted
    past the limit was seen while a flush waited)."""
    limit = BatchedLimit(60, interval=3600)
    for _ in range(3):
        limit.take(db, f"{KEY}:60", 5, "searches", label="search")
    await limit.flush()  # shared: 3
    for _ in range(2):
        limit.take(db, f"{KEY}:60", 5, "searches", label="search")  # 5 of 5
    async with db.acquire() as holder, holder.transaction():
        await holder.execute(
            "SELECT 1 FROM rate_limit_counters WHERE key = $1 FOR UPDATE", f"{KEY}:60"
        )
        flushing = asyncio.create_task(limit.flush())  # waits on the row
        await asyncio.sleep(0.2)
        assert not flushing.done()
        with pytest.raises(TooMany):
            limit.take(db, f"{KEY}:60", 5, "searches", label="search")
    await flushing
    assert await hits(db) == 5
    with pytest.raises(TooMany):
        limit.take(db, f"{KEY}:60", 5, "searches", label="search")
