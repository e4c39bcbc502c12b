"""BackgroundTask.stop ends its task even when the task lets one cancellation go.

Python 3.11's asyncio.wait_for returns the inner result, swallowing a cancellation, when the
awaited event fires in the same loop iteration as the cancel (fixed in 3.12): a loop that waits
that way then goes round again and a single cancel() never ends it, and shutdown hangs."""

from __future__ import annotations

import asyncio

from lms.background import BackgroundTask


async def stopped_within(task: BackgroundTask, seconds: float) -> None:
    """stop() returned within `seconds` (asyncio.wait, which cancels nothing: a wait_for here
    would cancel stop() itself and so end the task for it)."""
    stopping = asyncio.create_task(task.stop())
    done, _ = await asyncio.wait({stopping}, timeout=seconds)
    assert stopping in done, f"stop() still waiting after {seconds} s"
    stopping.result()


async def test_stop_ends_a_task_that_swallowed_the_first_cancellation() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            rounds += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if rounds == 1:
                    continue  # as wait_for does when the event and the cancel coincide
                raise

    task = BackgroundTask("swallows-once")
    task.start(loop)
    await asyncio.sleep(0)  # let it start waiting
    await stopped_within(task, 15)
    assert not task.running and rounds == 2


async def test_stop_ends_a_plain_task() -> None:
    async def loop() -> None:
        await asyncio.sleep(3600)

    task = BackgroundTask("plain")
    task.start(loop)
    await asyncio.sleep(0)
    await stopped_within(task, 5)
    assert not task.running
