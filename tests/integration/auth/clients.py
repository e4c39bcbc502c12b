"""What the auth tests need beside tests.conftest: clients that come from other addresses (directly,
or through a trusted proxy that names them in X-Forwarded-For), and the database statements a
request runs, read through asyncpg's own query-logging hook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from contextvars import ContextVar

import asyncpg
import httpx
from litestar import Litestar

# The load balancer of the proxied app (tests/integration/auth/conftest.py).
PROXY = "10.0.0.1"


@contextlib.asynccontextmanager
async def client_from(app: Litestar, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` (already started) whose connections come from `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def forwarded_for(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


# The statements of the task that set it; requests made through httpx's ASGI transport run in the
# caller's task, so they inherit it, and the app's background tasks (the outbox dispatcher) do not.
_recording: ContextVar[list[str] | None] = ContextVar("recorded_statements", default=None)


def _log(record: asyncpg.connection.LoggedQuery) -> None:
    statements = _recording.get()
    # asyncpg's own look-ups of type information run once per connection, whichever connection
    # a request happens to get: they are the driver's work, not the request's.
    if statements is not None and "pg_catalog.pg_type" not in record.query:
        statements.append(" ".join(record.query.split()))


@contextlib.asynccontextmanager
async def statement_logging(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Log the statements run on every connection of `pool`: all of them are opened and given the
    logger (asyncpg calls it in the context of the task that ran the statement)."""
    connections = [await pool.acquire() for _ in range(pool.get_max_size())]
    for conn in connections:
        conn.add_query_logger(_log)
        await pool.release(conn)
    try:
        yield
    finally:
        connections = [await pool.acquire() for _ in range(pool.get_max_size())]
        for conn in connections:
            conn.remove_query_logger(_log)
            await pool.release(conn)


async def with_statements(
    request: Awaitable[httpx.Response],
) -> tuple[httpx.Response, list[str]]:
    """The response to `request` (a client call not yet awaited) and the statements it ran, under
    statement_logging()."""
    found: list[str] = []
    token = _recording.set(found)
    try:
        response = await request
    finally:
        _recording.reset(token)
    # asyncpg hands each record to the logger with call_soon: let the loop run the last ones.
    for _ in range(5):
        await asyncio.sleep(0)
    return response, found
