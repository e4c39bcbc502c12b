"""Pacing for gauges whose refresh costs what they measure.

A queue depth read from PostgreSQL is a count of the backlog: 2.6 s at 2.5 million events
behind a reader (a webhook endpoint disabled for a few days, an LRS down). Refreshed on a fixed
period, by every worker and at every scrape, the count of a stuck queue would keep a database
core busy in proportion to how stuck it is. A `PacedRefresh` spaces each refresh by its period
or, once a refresh takes DEAR_SECONDS or more, by COST_FACTOR times what it took, so counting
never takes more than about 1 % of the time of whoever counts; a gauge is that much older when
its queue is that long. A short queue is counted as often as before (every scrape, every poll).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

COST_FACTOR = 100.0
DEAR_SECONDS = 0.05


class PacedRefresh:
    def __init__(
        self,
        every_seconds: float,
        *,
        cost_factor: float = COST_FACTOR,
        dear_seconds: float = DEAR_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_seconds = every_seconds
        self.cost_factor = cost_factor
        self.dear_seconds = dear_seconds
        self.clock = clock
        self._next = 0.0  # due at once

    def due(self) -> bool:
        return self.clock() >= self._next

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Around a refresh: what it took (done, failed or cancelled: each costs) sets when the
        next one is due."""
        began = self.clock()
        try:
            yield
        finally:
            now = self.clock()
            took = now - began
            paced = took * self.cost_factor if took >= self.dear_seconds else 0.0
            self._next = now + max(self.every_seconds, paced)
