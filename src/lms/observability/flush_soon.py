"""One deferred call on the running event loop: what gathers per-request work (metrics, log
lines) uses it to hand that work on together, a moment later, instead of once per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class FlushSoon:
    """Calls `flush` `delay` seconds after the first ask since its last call, on the event loop
    the ask came from; at once when the caller is on no event loop (nothing would call it
    later)."""

    def __init__(self, flush: Callable[[], None], delay: float) -> None:
        self._flush = flush
        self._delay = delay
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def ask(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        # A timer on another loop (closed since, as between tests) would never fire here.
        if self._timer is None or self._loop is not loop:
            self._timer = loop.call_later(self._delay, self._fire)
            self._loop = loop

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._flush()
