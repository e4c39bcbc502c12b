"""Rate limits shared by every API process (counters live in PostgreSQL): the limits, who a client
is for them, counting a hit against a key and refusing past the limit. The per-IP guard of the
auth endpoints (lms.api.rate_limits), the catalog's search limit and the per-account rules of
sign-in and codes all count here."""

from __future__ import annotations

import hashlib
import ipaddress
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lms.db.queries import Conn
from lms.db.queries import rate_limits as sql
from lms.domain.errors import TooMany
from lms.observability.metrics import RATE_LIMITED

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
