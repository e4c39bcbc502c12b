"""One long-running task of a process (the outbox dispatcher, the LISTEN connection, the
housekeeper): started once, cancelled and awaited on shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("lms.background")

# How long stop() lets a cancelled task clean up before it cancels it again (see stop()).
RECANCEL_SECONDS = 5.0


class BackgroundTask:
    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._task is None:
            self._task = asyncio.create_task(run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait until it has let go of what it held.

        Cancelled again while it still runs: a loop can let one cancellation go (Python 3.11's
        asyncio.wait_for returns the awaited result, swallowing the cancel, when both happen in
        the same loop iteration) and go round again, and shutdown would wait for it forever.
        asyncio.wait cancels nothing of its own, so the task's own cleanup runs undisturbed."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        while not (await asyncio.wait({task}, timeout=RECANCEL_SECONDS))[0]:
            log.warning("%s: still running after cancel, cancelling again", self.name)
            task.cancel()
        if not task.cancelled():
            task.result()  # what it raised, as awaiting it would have raised
