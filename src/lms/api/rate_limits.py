"""The per-client rate limit of the auth endpoints: a guard, because the client's address is an
HTTP matter (X-Forwarded-For from trusted proxies only); who counts as one client (an IPv4
address, an IPv6 /64) and the counting are lms.domain.rate_limits'."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from lms.api.client_ip import client_ip
from lms.domain.rate_limits import Limit, client_key, take


def per_ip(endpoint: str) -> Guard:
    """A guard: at most LMS_AUTH_RATE_LIMIT requests a minute from one client to `endpoint`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        settings = connection.app.state.ctx.settings
        client = client_key(client_ip(connection, settings.trusted_proxies))
        limit = Limit(settings.auth_rate_limit_per_minute, 60)
        await take(
            connection.app.state.ctx.pool,
            f"ip:{endpoint}:{client}",
            limit,
            f"{endpoint} requests from this address",
            label=f"ip:{endpoint}",
        )

    guard.__name__ = f"rate_limit_{endpoint.replace('-', '_')}"
    return guard
