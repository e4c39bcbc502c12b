"""The NOTIFY-driven cache both per-process caches use: what it trusts, when, and its loads."""

from __future__ import annotations

import asyncio

import pytest

from lms.notifications.cache import NotifiedCache


class Table:
    """A stand-in for the database: values by key, a count of reads, an optional gate."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {"a": 1, "b": 2}
        self.reads = 0
        self.gate: asyncio.Event | None = None

    async def load(self, key: str) -> int | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.values.get(key)


def cache_of(table: Table, **kwargs: float) -> NotifiedCache[str, int]:
    options = {"max_age": 60.0, "max_age_unheard": 0.0, "max_entries": 100} | kwargs
    return NotifiedCache(
        table.load,
        key_of=lambda payload: payload or None,
        max_age=options["max_age"],
        max_age_unheard=options["max_age_unheard"],
        max_entries=int(options["max_entries"]),
    )


async def test_listening_it_serves_from_memory_until_notified() -> None:
    table = Table()
    cache = cache_of(table)
    cache.subscriber().on_up()
    assert await cache.get("a") == 1 and await cache.get("a") == 1
    assert table.reads == 1
    table.values["a"] = 10
    cache.subscriber().on_notify("a")
    assert await cache.get("a") == 10
    assert table.reads == 2


async def test_an_empty_payload_drops_every_key() -> None:
    table = Table()
    cache = cache_of(table)
    cache.subscriber().on_up()
    await cache.get("a"), await cache.get("b")
    cache.subscriber().on_notify("")
    await cache.get("a"), await cache.get("b")
    assert table.reads == 4


async def test_while_not_listening_every_read_goes_to_the_database() -> None:
    table = Table()
    cache = cache_of(table)
    await cache.get("a"), await cache.get("a")
    assert table.reads == 2
    subscriber = cache.subscriber()
    subscriber.on_up()
    await cache.get("a"), await cache.get("a")
    assert table.reads == 3
    subscriber.on_down()  # what was cached may go stale unheard from now on
    await cache.get("a")
    assert table.reads == 4


async def test_unheard_entries_live_their_short_age() -> None:
    table = Table()
    cache = cache_of(table, max_age_unheard=60.0)
    await cache.get("a"), await cache.get("a")
    assert table.reads == 1


async def test_no_entry_outlives_the_backstop_age() -> None:
    table = Table()
    cache = cache_of(table, max_age=0.05)
    cache.subscriber().on_up()
    await cache.get("a")
    await asyncio.sleep(0.06)
    await cache.get("a")
    assert table.reads == 2


async def test_concurrent_misses_share_one_load() -> None:
    table = Table()
    table.gate = asyncio.Event()
    cache = cache_of(table)
    cache.subscriber().on_up()
    readers = [asyncio.create_task(cache.get("a")) for _ in range(50)]
    await asyncio.sleep(0.01)
    table.gate.set()
    assert await asyncio.gather(*readers) == [1] * 50
    assert table.reads == 1


async def test_a_load_that_raced_an_invalidation_is_neither_joined_nor_kept() -> None:
    table = Table()
    table.gate = asyncio.Event()
    cache = cache_of(table)
    cache.subscriber().on_up()
    early = asyncio.create_task(cache.get("a"))
    await asyncio.sleep(0.01)
    table.values["a"] = 10
    cache.subscriber().on_notify("a")  # the early read may have seen the old row
    late = asyncio.create_task(cache.get("a"))
    await asyncio.sleep(0.01)
    table.gate.set()
    await early
    assert await late == 10
    assert table.reads == 2
    assert await cache.get("a") == 10
    assert table.reads == 2


async def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    table = Table()
    table.gate = asyncio.Event()
    cache = cache_of(table)
    first = asyncio.create_task(cache.get("a"))
    second = asyncio.create_task(cache.get("a"))
    await asyncio.sleep(0.01)
    first.cancel()
    table.gate.set()
    assert await second == 1
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_load_reaches_every_caller_and_is_not_cached() -> None:
    calls = 0

    async def failing(_key: str) -> int | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("database down")

    cache: NotifiedCache[str, int] = NotifiedCache(
        failing, key_of=lambda p: p, max_age=60.0, max_age_unheard=60.0, max_entries=10
    )
    results = await asyncio.gather(cache.get("a"), cache.get("a"), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    with pytest.raises(ConnectionError):
        await cache.get("a")
    assert calls == 2


async def test_missing_rows_are_not_cached_and_the_size_is_bounded() -> None:
    table = Table()
    cache = cache_of(table, max_entries=1)
    cache.subscriber().on_up()
    assert await cache.get("nobody") is None
    assert await cache.get("nobody") is None
    assert table.reads == 2
    await cache.get("a"), await cache.get("b"), await cache.get("b")
    assert table.reads == 4
    await cache.get("a")  # evicted when b came in
    assert table.reads == 5
