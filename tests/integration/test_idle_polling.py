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

from lms.db.queries import event_cursors
from lms.db.queries import outbox as outbox_sql
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


async def test_an_event_reader_says_how_long_its_backoff_lasts(
    conn: asyncpg.Connection,
) -> None:
    await conn.execute("DELETE FROM event_cursors WHERE name = 'idle-test'")
    assert await event_cursors.place(conn, "idle-test") is None  # no such reader
    await event_cursors.add_reader(conn, "idle-test", 1, 0, 0)
    assert (await event_cursors.place(conn, "idle-test"))["wait_seconds"] == 0  # at once
    assert await event_cursors.back_off(conn, "idle-test", "LRS down", 30) == 1
    wait = (await event_cursors.place(conn, "idle-test"))["wait_seconds"]
    assert 29 < wait <= 30
    await event_cursors.move(conn, "idle-test", 2, 0, 0)
    assert (await event_cursors.place(conn, "idle-test"))["wait_seconds"] == 0
    await conn.execute("DELETE FROM event_cursors WHERE name = 'idle-test'")
