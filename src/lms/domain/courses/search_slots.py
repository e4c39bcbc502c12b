"""How many catalog searches one process runs at once (LMS_SEARCH_CONCURRENCY), and the short
wait in line for a slot. Free of any web framework: bench/peers/raw_limit.py runs it too."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sys
from collections.abc import AsyncIterator

from lms.domain.errors import Unavailable

# A search over the per-process cap waits this long for a slot, behind at most this many per slot.
# The wait is what sheds load; the line's bound only keeps a flood's waiters from growing without
# end. It must hold every connection one process may be handed: Granian's workers share one
# listening socket, 64 connections landed 36 and 28 on two processes, and under the bench's
# catalog mix nearly every connection of a process waits for a slot at once. At 8 a slot (4
# running, 32 waiting) such a process refused searches at once with 503, in bursts.
SEARCH_WAIT_SECONDS = 1.0
SEARCH_LINE_PER_SLOT = 64


class SearchSlots:
    """How many searches this process runs at once. A search over the cap waits for a slot a
    moment (a burst of ordinary searches is served, not refused) in a bounded line, and is
    refused with 503 when none frees in time or the line is full. Waiting holds no pool
    connection (a search takes one only once it runs), so the rest of the API is unaffected.
    The event loop's steps do not interleave, so plain counters are exact."""

    def __init__(self) -> None:
        self.running = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    @contextlib.asynccontextmanager
    async def take(self, cap: int, *, wait: float, line: int) -> AsyncIterator[None]:
        """A slot for the block; wait at most `wait` seconds behind at most `line` others."""
        if self.running < cap and not self._waiting:
            self.running += 1
        else:
            await self._wait(wait, line)
        try:
            yield
        finally:
            self._release()

    async def _wait(self, wait: float, line: int) -> None:
        if len(self._waiting) >= line:
            raise _busy()
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), wait)
        except BaseException:
            if turn.done():  # handed a slot just as the wait ended: give it on
                self._release()
            else:
                turn.cancel()
                self._waiting.remove(turn)
            if isinstance(sys.exception(), TimeoutError):
                raise _busy() from None
            raise

    def _release(self) -> None:
        """Hand the slot to the first in line (it stays counted as running), else free it."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1


def _busy() -> Unavailable:
    return Unavailable("too many searches at once; try again in a moment", retry_after=1)
