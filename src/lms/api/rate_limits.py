"""The per-IP rate limit of the auth endpoints: a guard, because the client's address is an HTTP
matter (X-Forwarded-For from trusted proxies only); the counting is lms.domain.rate_limits'."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from lms.api.client_ip import client_ip
from lms.domain.rate_limits import Limit, take


def per_ip(endpoint: str) -> Guard:
    """A guard: at most LMS_AUTH_RATE_LIMIT requests a minute from one IP to `endpoint`."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        settings = connection.app.state.ctx.settings
        ip = client_ip(connection, settings.trusted_proxies)
        limit = Limit(settings.auth_rate_limit_per_minute, 60)
        await take(
            connection.app.state.ctx.pool,
            f"ip:{endpoint}:{ip}",
            limit,
            f"{endpoint} requests from this address",
            label=f"ip:{endpoint}",
        )

    guard.__name__ = f"rate_limit_{endpoint.replace('-', '_')}"
    return guard
