"""Rate limits shared by every API process (counters live in PostgreSQL): the limits, counting a
hit against a key and refusing past the limit. The per-IP guard of the auth endpoints
(lms.api.rate_limits) and the per-account rules of sign-in and codes both count here."""

from __future__ import annotations

import hashlib
import math
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


# Per account (or per destination address), whatever the IP.
FAILED_LOGINS = Limit(10, 15 * 60)
OTP_SENDS_BURST = Limit(1, 30)
OTP_SENDS_HOURLY = Limit(5, 3600)


def too_many(retry_after: float, what: str) -> TooMany:
    seconds = max(1, math.ceil(retry_after))
    return TooMany(f"too many {what}; try again in {seconds} s", retry_after=seconds)


def account_key(bucket: str, identifier: str) -> str:
    """Keys name accounts by a hash, so the counters table holds no addresses."""
    digest = hashlib.sha256(identifier.strip().lower().encode()).hexdigest()[:32]
    return f"{bucket}:{digest}"


async def take(db: Conn, key: str, limit: Limit, what: str, *, label: str) -> None:
    """Count one hit against `key`; TooMany when it goes over `limit` (counted in metrics as
    `label`)."""
    hit = await sql.hit(db, f"{key}:{limit.window_seconds}", limit.window_seconds)
    if hit.count > limit.count:
        RATE_LIMITED.labels(label).inc()
        raise too_many(hit.reset_in, what)


async def give_back(db: Conn, key: str, limit: Limit) -> None:
    """Uncount a hit that turned out not to matter (a login that succeeded)."""
    await sql.undo(db, f"{key}:{limit.window_seconds}")
