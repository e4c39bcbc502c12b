"""The per-process cap on concurrent catalog searches: a search over the cap waits a moment for a
slot in a bounded line, then is refused; a slot freed goes to the first in line; a waiter that
gives up (timeout, client gone) leaves nothing behind."""

from __future__ import annotations

import asyncio

import pytest

from lms.domain.courses.catalog import SearchSlots
from lms.domain.courses.search_slots import SEARCH_LINE_PER_SLOT, SEARCH_WAIT_SECONDS
from lms.domain.errors import Unavailable
from lms.settings import Settings


async def hold(slots: SearchSlots, release: asyncio.Event, log: list[str], name: str) -> None:
    async with slots.take(2, wait=5.0, line=2):
        log.append(name)
        await release.wait()


async def test_a_search_over_the_cap_runs_when_a_slot_frees() -> None:
    slots, log = SearchSlots(), []
    first, second = asyncio.Event(), asyncio.Event()
    running = [
        asyncio.create_task(hold(slots, first, log, "a")),
        asyncio.create_task(hold(slots, second, log, "b")),
    ]
    await asyncio.sleep(0)
    waiting = asyncio.create_task(hold(slots, second, log, "c"))
    await asyncio.sleep(0.01)
    assert log == ["a", "b"] and slots.running == 2
    first.set()
    await asyncio.sleep(0.01)
    assert log == ["a", "b", "c"] and slots.running == 2  # handed over, still counted once
    second.set()
    await asyncio.gather(*running, waiting)
    assert slots.running == 0


async def test_no_slot_in_time_or_a_full_line_is_503() -> None:
    slots, release = SearchSlots(), asyncio.Event()
    busy = [asyncio.create_task(hold(slots, release, [], str(i))) for i in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        async with slots.take(2, wait=0.05, line=2):
            pytest.fail("ran without a slot")
    line = [asyncio.create_task(hold(slots, release, [], f"w{i}")) for i in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(Unavailable):  # two wait already: refused without waiting
        async with slots.take(2, wait=5.0, line=2):
            pytest.fail("ran without a slot")
    release.set()
    await asyncio.gather(*busy, *line)
    assert slots.running == 0


async def test_a_waiter_that_goes_away_leaves_its_place() -> None:
    slots, release = SearchSlots(), asyncio.Event()
    busy = [asyncio.create_task(hold(slots, release, [], str(i))) for i in range(2)]
    await asyncio.sleep(0)
    gone = asyncio.create_task(hold(slots, release, [], "gone"))
    await asyncio.sleep(0.01)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    release.set()
    await asyncio.gather(*busy)
    assert slots.running == 0
    async with slots.take(2, wait=0.05, line=2):  # nothing was left waiting for a slot
        assert slots.running == 1


async def test_the_line_holds_every_connection_one_process_may_be_handed() -> None:
    """Granian's workers share one listening socket: 64 keep-alive connections landed 36 and 28,
    another time 31 and 33, on two processes, and under a catalog mix nearly every connection of
    a process ends up waiting for a search slot. The line's bound guards memory only (the wait
    is what sheds load): a process's whole share of a 64-connection client, searching at once,
    waits its turn instead of being refused at once (it was with 8 a slot: 4 run, 32 wait)."""
    cap = Settings().search_concurrency
    slots, served = SearchSlots(), []

    async def search(i: int) -> None:
        async with slots.take(cap, wait=SEARCH_WAIT_SECONDS, line=cap * SEARCH_LINE_PER_SLOT):
            await asyncio.sleep(0.002)
            served.append(i)

    await asyncio.gather(*(search(i) for i in range(64)))
    assert sorted(served) == list(range(64)) and slots.running == 0
