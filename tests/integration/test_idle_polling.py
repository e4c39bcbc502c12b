"""Background loops that wait for work ask PostgreSQL how long until the next item is due; with
nothing queued the answer must be "nothing" (they then sleep their poll interval), not "now".
PostgreSQL's greatest() skips NULLs, so greatest(min(...) - now(), 0) over no rows was 0: every
API process's outbox dispatcher (and every xAPI sender) asked again every 50 ms while idle, some
40 statements a second each."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from lms.db.queries import outbox as outbox_sql
from lms.db.queries import xapi as xapi_sql
from lms.db.tables import MessageChannel


@pytest.fixture
async def conn(db: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction that is rolled back: the queues can be emptied and
    filled here without touching what other tests queued."""
    async with db.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            yield connection
        finally:
            await transaction.rollback()


async def due_in(
    conn: asyncpg.Connection, table: str, key: str, value: uuid.UUID, seconds: float
) -> None:
    """Make the queued row `key` = `value` of `table` due `seconds` from now."""
    await conn.execute(
        f"UPDATE {table} SET next_attempt_at = now() + make_interval(secs => $2) WHERE {key} = $1",
        value,
        float(seconds),
    )


async def test_an_empty_outbox_has_nothing_due(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM outbound_messages")
    assert await outbox_sql.seconds_until_next_due(conn) is None


async def test_the_outbox_says_how_long_until_its_next_message(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM outbound_messages")
    message = await outbox_sql.enqueue(
        conn,
        channel=MessageChannel.EMAIL.value,
        recipient="idle@example.test",
        subject="subject",
        body_text="body",
        body_html=None,
        purpose="test",
        expires_at=None,
        request_id=None,
    )
    await due_in(conn, "outbound_messages", "id", message, 30)
    wait = await outbox_sql.seconds_until_next_due(conn)
    assert wait is not None and 29 < wait <= 30
    await due_in(conn, "outbound_messages", "id", message, -60)
    assert await outbox_sql.seconds_until_next_due(conn) == 0  # overdue: at once


async def test_an_empty_xapi_queue_has_nothing_due(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM xapi_statements")
    assert await xapi_sql.seconds_until_next_due(conn) is None


async def test_the_xapi_queue_says_how_long_until_its_next_statement(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("DELETE FROM xapi_statements")
    event = uuid.uuid4()
    await xapi_sql.enqueue(conn, [(event, uuid.uuid4(), "enrollment.created", {"id": "x"})])
    await due_in(conn, "xapi_statements", "event_id", event, 30)
    wait = await xapi_sql.seconds_until_next_due(conn)
    assert wait is not None and 29 < wait <= 30
