"""Which failures mean "the database is unavailable" (a 503 with Retry-After) and which are bugs
(a 500): real errors raised by asyncpg against a real PostgreSQL, not built by hand."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from lms.api.errors import _is_database_unavailable
from lms.netutil import free_port


async def raised(operation: Callable[[], Awaitable[object]]) -> BaseException:
    try:
        await operation()
    except Exception as exc:
        return exc
    raise AssertionError("the operation did not fail")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.close(), 5)


async def test_a_refused_connection_is_unavailability() -> None:
    exc = await raised(
        lambda: asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/lms")
    )
    assert isinstance(exc, ConnectionRefusedError)
    assert _is_database_unavailable(exc)


async def test_a_terminated_backend_is_unavailability(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """What a restart does to pooled connections: the server ends them (57P01), and a query on one
    fails however far asyncpg got with the server's farewell."""
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        killer = await asyncpg.connect(database_url)
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await killer.close()
        first = await raised(lambda: conn.fetchval("SELECT 1"))
        # Which one depends on how far asyncpg got with the server's farewell; each is an outage.
        assert isinstance(
            first,
            (
                asyncpg.AdminShutdownError,
                asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ),
        )
        assert _is_database_unavailable(first)
        # asyncpg has handed the dead connection back to the pool: a request's next statement
        # on it fails too, and is an outage as well.
        second = await raised(lambda: conn.fetchval("SELECT 1"))
        assert isinstance(second, asyncpg.InterfaceError)
        assert _is_database_unavailable(second)
    assert await pool.fetchval("SELECT 1") == 1  # and the pool replaces the dead connection


async def test_waiting_too_long_for_a_pooled_connection_is_unavailability(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire():  # the only connection
        exc = await raised(lambda: pool.acquire(timeout=0.05))
    assert isinstance(exc, TimeoutError)
    assert _is_database_unavailable(exc)


async def test_a_closed_pool_is_unavailability(pool: asyncpg.Pool) -> None:
    await pool.close()
    exc = await raised(lambda: pool.fetchval("SELECT 1"))
    assert isinstance(exc, asyncpg.InterfaceError)
    assert _is_database_unavailable(exc)


async def test_an_outage_raised_from_inside_another_error_is_unavailability() -> None:
    refused = await raised(
        lambda: asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    )
    with pytest.raises(RuntimeError) as wrapped:
        raise RuntimeError("could not load the user") from refused
    assert _is_database_unavailable(wrapped.value)
    assert _is_database_unavailable(ExceptionGroup("several", [ValueError("x"), refused]))


async def test_bugs_and_other_failures_stay_500s(pool: asyncpg.Pool, tmp_path: Path) -> None:
    bad_argument = await raised(lambda: pool.fetchval("SELECT $1::int", "not a number"))
    assert isinstance(bad_argument, asyncpg.DataError)  # an InterfaceError, but our bug
    duplicate = await raised(
        lambda: pool.execute(
            "CREATE TEMP TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (1)"
        )
    )
    assert isinstance(duplicate, asyncpg.UniqueViolationError)
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        misused = await raised(transaction.start)
        await transaction.rollback()
    assert isinstance(misused, asyncpg.InterfaceError)
    missing_file = await raised(lambda: asyncio.to_thread((tmp_path / "nope").read_bytes))
    slow = await raised(lambda: asyncio.wait_for(asyncio.sleep(1), 0.01))
    for exc in (bad_argument, duplicate, misused, missing_file, slow):
        assert not _is_database_unavailable(exc), exc
