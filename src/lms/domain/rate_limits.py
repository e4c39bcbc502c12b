"""Rate limits shared by every API process (counters live in PostgreSQL): the limits, who a client
is for them, counting a hit against a key and refusing past the limit. The per-IP guard of the
auth endpoints (lms.api.rate_limits), the catalog's search limit and the per-account rules of
sign-in and codes all count here."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lms.db.queries import Conn
from lms.db.queries import rate_limits as sql
from lms.domain.errors import TooMany
from lms.observability.metrics import RATE_LIMITED

log = logging.getLogger("lms.rate_limits")

WINDOW_LONGEST_SECONDS = 86400  # counters older than any window are purged


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window_seconds: int


# Failed logins, counted per account and client (so a guesser elsewhere does not lock the owner
# out) and per account from every client together (a ceiling on distributed guessing; a client
# that already holds a login to the account is spared it, see lms.domain.auth.sessions).
FAILED_LOGINS_PER_CLIENT = Limit(10, 15 * 60)
# The contract's "an account at most 10 failed logins in 15 minutes": from clients that have
# never signed in to it. A client holding a login to the account is spared (see sessions).
FAILED_LOGINS_PER_ACCOUNT = Limit(10, 15 * 60)
# Codes to one address or number, whoever asks.
OTP_SENDS_BURST = Limit(1, 30)
OTP_SENDS_HOURLY = Limit(5, 3600)

# An IPv6 client is given a /64 (RFC 6177): it can pick any of 2**64 addresses in it, so it is
# one client. IPv4 clients are one address each.
IPV6_CLIENT_PREFIX = 64
_MAX_KEY_TEXT = 64


def client_key(ip: str | None) -> str:
    """Who a client is for rate limits: its IPv4 address (an IPv4-mapped IPv6 address counts as
    the IPv4 one), or its IPv6 /64. Text that is not an address is kept, bounded."""
    if ip is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip.strip()[:_MAX_KEY_TEXT] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return str(mapped)
        network = ipaddress.IPv6Network((int(address), IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)


def too_many(retry_after: float, what: str) -> TooMany:
    seconds = max(1, math.ceil(retry_after))
    return TooMany(f"too many {what}; try again in {seconds} s", retry_after=seconds)


def account_key(bucket: str, identifier: str) -> str:
    """Keys name accounts by a hash, so the counters table holds no addresses."""
    digest = hashlib.sha256(identifier.strip().lower().encode()).hexdigest()[:32]
    return f"{bucket}:{digest}"


def _row(key: str, window_seconds: int) -> str:
    return f"{key}:{window_seconds}"


async def take(
    db: Conn,
    key: str,
    limit: Limit,
    what: str,
    *,
    label: str,
    unless: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Count one hit against `key`; TooMany when it goes over `limit` (counted in metrics as
    `label`), unless `unless` (asked only then) exempts this caller."""
    hit = await sql.hit(db, _row(key, limit.window_seconds), limit.window_seconds)
    if hit.count > limit.count and not (unless is not None and await unless()):
        RATE_LIMITED.labels(label).inc()
        raise too_many(hit.reset_in, what)


async def give_back(db: Conn, key: str, limit: Limit) -> None:
    """Uncount a hit that turned out not to matter (a login that succeeded)."""
    await sql.undo(db, _row(key, limit.window_seconds))


async def count(db: Conn, key: str, window_seconds: int) -> int:
    """Count one hit against `key` and return the count in this window, refusing nothing (the
    caller decides what the count means)."""
    hit = await sql.hit(db, _row(key, window_seconds), window_seconds)
    return hit.count


async def uncount(db: Conn, key: str, window_seconds: int) -> None:
    await sql.undo(db, _row(key, window_seconds))


async def restart(db: Conn, key: str, window_seconds: int) -> None:
    """Start `key` over from zero now (a new code was sent: its tries count afresh)."""
    await sql.restart(db, _row(key, window_seconds))


# How often a process adds the hits it counted to the shared counters (BatchedLimit).
FLUSH_SECONDS = 0.1


@dataclass
class _Count:
    shared: int  # the key's count, all processes together, as of this process's last flush
    pending: int  # hits this process admitted since, not yet added to the shared count
    resets_at: float  # time.monotonic() when the key's window ends
    # Hits a flush is adding right now: no longer pending, not yet in `shared` (until the
    # totals come back), and still counted.
    writing: int = 0


class BatchedLimit:
    """A limit checked in memory and counted in PostgreSQL in aggregate, for a limit asked on a
    hot read (the catalog search): no statement per request. A hit is admitted while the key's
    shared count as of the last flush plus this process's hits since stays within the limit;
    every FLUSH_SECONDS one statement adds each key's new hits to the shared counters (the same
    rate_limit_counters rows and fixed windows `take` uses) and brings back their totals. One
    process counts exactly; across processes a client can get past the limit only by what the
    other processes admitted within one flush interval, so a burst spread over P processes
    gets at most P x the limit inside the first 0.1 s of a window, and the limit from then on.
    A refusal writes nothing. Counts a flush could not write are kept and tried again."""

    def __init__(self, window_seconds: int, interval: float = FLUSH_SECONDS) -> None:
        self.window_seconds = window_seconds
        self.interval = interval
        self._counts: dict[str, _Count] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._db: Conn | None = None

    def take(self, db: Conn, key: str, limit: int, what: str, *, label: str) -> None:
        """Count one hit against `key`; TooMany past `limit` (counted in metrics as `label`)."""
        now = time.monotonic()
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = _Count(0, 0, now + self.window_seconds)
        elif now >= count.resets_at:  # the window is over: a new one starts with what is pending
            count.shared, count.resets_at = 0, now + self.window_seconds
        if count.shared + count.writing + count.pending + 1 > limit:
            RATE_LIMITED.labels(label).inc()
            raise too_many(count.resets_at - now, what)
        count.pending += 1
        self._db = db
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        """Flush every interval while hits keep coming, then stop (the next hit starts it)."""
        while any(c.pending for c in self._counts.values()):
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """Add the pending hits to the shared counters now."""
        pending = {key: c.pending for key, c in self._counts.items() if c.pending}
        if not pending or self._db is None:
            return
        for key, n in pending.items():
            handed = self._counts[key]
            handed.pending -= n
            handed.writing += n
        try:
            totals = await sql.hit_many(self._db, pending, self.window_seconds)
        except Exception as exc:  # kept for the next flush; the process's own count still holds
            for key, n in pending.items():
                if (count := self._counts.get(key)) is not None:
                    count.pending += n
                    count.writing -= n
            log.warning("adding hits to the shared rate limits failed: %s", exc)
            return
        now = time.monotonic()
        for key, n in pending.items():
            if (count := self._counts.get(key)) is not None:  # else forgotten meanwhile
                count.writing -= n
                if (hit := totals.get(key)) is not None:
                    count.shared, count.resets_at = hit.count, now + hit.reset_in
        # Keys whose window is over and that have nothing to add are forgotten.
        for key in [
            k
            for k, c in self._counts.items()
            if not c.pending and not c.writing and now >= c.resets_at
        ]:
            del self._counts[key]

    def forget(self) -> None:
        """Drop this process's counts, unwritten ones too (tests start from an empty database)."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self._counts.clear()
