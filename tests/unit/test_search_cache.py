"""The anonymous search pages each process keeps: served while fresh, served stale while one
refresh runs, computed once for concurrent misses, never kept when computing fails."""

from __future__ import annotations

import asyncio

import pytest

from lms.domain.courses.search_cache import SearchCache


class Counting:
    """A computation that counts its runs, each answering "page <n>" after `delay` seconds."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.runs = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self) -> str:
        self.runs += 1
        run = self.runs
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("database away")
        return f"page {run}"


def test_a_kept_page_is_served_until_it_goes_stale_then_refreshed_behind_it() -> None:
    async def run() -> None:
        cache, compute = SearchCache(), Counting()
        assert await cache.get("q", 0.2, compute) == "page 1"
        assert await cache.get("q", 0.2, compute) == "page 1"
        assert compute.runs == 1
        await asyncio.sleep(0.25)  # stale: still served, one refresh starts
        assert await cache.get("q", 0.2, compute) == "page 1"
        assert await cache.get("q", 0.2, compute) == "page 1"
        await asyncio.sleep(0.02)
        assert compute.runs == 2
        assert await cache.get("q", 0.2, compute) == "page 2"
        await asyncio.sleep(0.45)  # past stale too: computed while the caller waits
        assert await cache.get("q", 0.2, compute) == "page 3"

    asyncio.run(run())


def test_concurrent_misses_wait_for_one_computation() -> None:
    async def run() -> None:
        cache, compute = SearchCache(), Counting(delay=0.05)
        pages = await asyncio.gather(*(cache.get("q", 30, compute) for _ in range(20)))
        assert pages == ["page 1"] * 20
        assert compute.runs == 1

    asyncio.run(run())


def test_a_requester_going_away_does_not_cancel_it_for_the_others() -> None:
    async def run() -> None:
        cache, compute = SearchCache(), Counting(delay=0.05)
        first = asyncio.create_task(cache.get("q", 30, compute))
        await asyncio.sleep(0.01)
        second = asyncio.create_task(cache.get("q", 30, compute))
        await asyncio.sleep(0)
        first.cancel()
        assert await second == "page 1"
        assert compute.runs == 1

    asyncio.run(run())


def test_a_failure_reaches_every_waiter_and_nothing_is_kept() -> None:
    async def run() -> None:
        cache, failing = SearchCache(), Counting(delay=0.02, fail=True)
        answers = await asyncio.gather(
            *(cache.get("q", 30, failing) for _ in range(3)), return_exceptions=True
        )
        assert [str(a) for a in answers] == ["database away"] * 3
        assert failing.runs == 1
        assert await cache.get("q", 30, Counting()) == "page 1"

    asyncio.run(run())


def test_a_failed_refresh_keeps_the_stale_page(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> None:
        cache = SearchCache()
        assert await cache.get("q", 0.1, Counting()) == "page 1"
        await asyncio.sleep(0.15)
        failing = Counting(fail=True)
        assert await cache.get("q", 0.1, failing) == "page 1"
        await asyncio.sleep(0.02)
        assert failing.runs == 1
        assert await cache.get("q", 0.1, failing) == "page 1"  # still stale, refreshed again
        await asyncio.sleep(0.02)
        assert failing.runs == 2

    asyncio.run(run())
    assert "refreshing a kept search page failed" in caplog.text


def test_only_the_most_recently_used_pages_are_kept() -> None:
    async def run() -> None:
        cache = SearchCache(max_pages=3)
        for key in "abcd":
            await cache.get(key, 30, Counting())
        recount = Counting()
        assert await cache.get("a", 30, recount) == "page 1"  # "a" was dropped: computed again
        assert recount.runs == 1
        assert await cache.get("d", 30, recount) == "page 1"  # "d" was kept
        assert recount.runs == 1

    asyncio.run(run())
