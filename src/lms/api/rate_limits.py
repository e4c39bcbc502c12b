"""Rate limits shared by every API process (counters live in PostgreSQL): per client IP on each
auth endpoint, and per account for the things an attacker would repeat against one victim."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import TooManyRequestsException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from lms.api.client_ip import client_ip
from lms.db.engine import pool
from lms.db.queries import rate_limits as sql
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


def too_many(retry_after: float, what: str) -> TooManyRequestsException:
    seconds = max(1, math.ceil(retry_after))
    return TooManyRequestsException(
        detail=f"too many {what}; try again in {seconds} s", headers={"Retry-After": str(seconds)}
    )


def account_key(bucket: str, identifier: str) -> str:
    """Keys name accounts by a hash, so the counters table holds no addresses."""
    digest = hashlib.sha256(identifier.strip().lower().encode()).hexdigest()[:32]
    return f"{bucket}:{digest}"


async def take(key: str, limit: Limit, what: str, *, label: str) -> None:
    """Count one hit against `key`; 429 when it goes over `limit` (counted in metrics as `label`)."""
    hit = await sql.hit(pool(), f"{key}:{limit.window_seconds}", limit.window_seconds)
    if hit.count > limit.count:
        RATE_LIMITED.labels(label).inc()
        raise too_many(hit.reset_in, what)


async def give_back(key: str, limit: Limit) -> None:
    """Uncount a hit that turned out not to matter (a login that succeeded)."""
    await sql.undo(pool(), f"{key}:{limit.window_seconds}")


def per_ip(endpoint: str) -> Guard:
    """A guard: at most LMS_AUTH_RATE_LIMIT requests a minute from one IP to `endpoint`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        settings = connection.app.state.ctx.settings
        ip = client_ip(connection, settings.trusted_proxies)
        limit = Limit(settings.auth_rate_limit_per_minute, 60)
        await take(
            f"ip:{endpoint}:{ip}",
            limit,
            f"{endpoint} requests from this address",
            label=f"ip:{endpoint}",
        )

    guard.__name__ = f"rate_limit_{endpoint.replace('-', '_')}"
    return guard
