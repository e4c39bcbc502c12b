"""Anonymous catalog search pages, kept for a moment in each API process.

A ranked search costs in proportion to its matches: at 1,000,000 courses a common word matches
a fifth of the catalog and ranking those takes half a second, while a page of the listing takes
a millisecond at any size. Common words are also the searches made most often, so each page
an anonymous visitor asks for is computed once and served to everyone for LMS_SEARCH_CACHE_SECONDS
(what the answer's Cache-Control already lets a browser or CDN keep), then for as long again
while one request's worth of work computes the fresh one in the background (the header's
stale-while-revalidate). Concurrent misses of one page wait for the same computation. Signed-in
callers are not served from here: they read the primary, and see what they have just changed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

log = logging.getLogger("lms.catalog.search_cache")

# Pages kept per process (a page is some 10 KB of JSON): the most recently used stay.
MAX_PAGES = 512


@dataclass
class _Page:
    text: str
    fresh_until: float
    stale_until: float
    refreshing: bool = False


class SearchCache:
    def __init__(self, max_pages: int = MAX_PAGES) -> None:
        self.max_pages = max_pages
        self._pages: OrderedDict[Hashable, _Page] = OrderedDict()
        self._computing: dict[Hashable, asyncio.Task[str]] = {}

    async def get(self, key: Hashable, ttl: float, compute: Callable[[], Awaitable[str]]) -> str:
        """The page for `key`: kept, or computed (once, however many ask at the same time)."""
        now = time.monotonic()
        page = self._pages.get(key)
        if page is not None:
            if now < page.fresh_until:
                self._pages.move_to_end(key)
                return page.text
            if now < page.stale_until:
                self._pages.move_to_end(key)
                if not page.refreshing:
                    page.refreshing = True
                    refresh = asyncio.get_running_loop().create_task(
                        self._refresh(key, ttl, compute, page)
                    )
                    _background.add(refresh)
                    refresh.add_done_callback(_background.discard)
                return page.text
        return await self._compute(key, ttl, compute)

    async def _compute(
        self, key: Hashable, ttl: float, compute: Callable[[], Awaitable[str]]
    ) -> str:
        """One computation per key at a time, in a task of its own: a requester that goes away
        (cancelled) does not cancel it for the others waiting."""
        task = self._computing.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(key, ttl, compute))
            task.add_done_callback(_retrieve)
            self._computing[key] = task
        return await asyncio.shield(task)

    async def _run(self, key: Hashable, ttl: float, compute: Callable[[], Awaitable[str]]) -> str:
        try:
            text = await compute()
            self._keep(key, text, ttl)
            return text
        finally:
            self._computing.pop(key, None)

    async def _refresh(
        self, key: Hashable, ttl: float, compute: Callable[[], Awaitable[str]], page: _Page
    ) -> None:
        try:
            await self._compute(key, ttl, compute)
        except Exception as exc:  # the stale page stays until it expires; the next one retries
            log.warning("refreshing a kept search page failed: %s", exc)
        finally:
            page.refreshing = False

    def _keep(self, key: Hashable, text: str, ttl: float) -> None:
        now = time.monotonic()
        self._pages[key] = _Page(text, now + ttl, now + 2 * ttl)
        self._pages.move_to_end(key)
        while len(self._pages) > self.max_pages:
            self._pages.popitem(last=False)

    def clear(self) -> None:
        self._pages.clear()


def _retrieve(task: asyncio.Task[str]) -> None:
    """Its failure is the requesters' to report; when none is left waiting, it is dropped here
    rather than warned about as never retrieved."""
    if not task.cancelled():
        task.exception()


# Refreshes running in the background (a reference, so none is collected mid-way).
_background: set[asyncio.Task[None]] = set()
