"""Fixtures of the auth tests: a second app instance that trusts a load balancer (another API
process on the same database), and a client that reaches it through that balancer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import httpx
import pytest
from litestar import Litestar

from lms.settings import Settings
from tests.integration.auth.clients import PROXY, client_from


@pytest.fixture(scope="module")
def proxied_app(settings: Settings, db_pool: asyncpg.Pool) -> Litestar:
    """The API as deployed behind a load balancer at PROXY (LMS_TRUSTED_PROXIES)."""
    from lms.app import create_app

    app = create_app(replace(settings, trusted_proxies=(PROXY,)))
    app.state.ctx.db = db_pool  # the session's pool is up already (startup would hand it over)
    return app


@pytest.fixture
async def via_proxy(
    proxied_app: Litestar, api: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the proxied app whose requests arrive from the balancer, on the emptied
    database of `api`."""
    async with client_from(proxied_app, PROXY) as client:
        yield client
