"""The xAPI sender against a real LRS (Ralph): statements built from the event log reach it in
batches, once each, through lost answers and refused statements, and the sender's place moves
past them once it has them; a dead LRS only makes them wait (the kill-mid-burst test goes
through the API: test_end_to_end.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from lms.db.queries import event_cursors
from lms.db.queries import xapi as sql
from lms.domain.events import cursor, xapi
from lms.domain.events.cursor import Place
from lms.domain.events.dispatcher import EventDispatcher
from lms.domain.events.log import record_event
from lms.domain.events.xapi_sink import (
    READER,
    LrsClient,
    XapiSender,
    XapiSink,
    statements_of,
)
from lms.settings import Settings
from tests.support.lrs import Ralph, xapi_problems

BASE = "https://lms.example.test"


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]


def enrollments(count: int) -> list[NewEvent]:
    course = str(uuid.uuid4())
    return [
        NewEvent(
            "enrollment.created",
            {"userId": str(uuid.uuid4()), "courseId": course, "enrollmentId": str(uuid.uuid4())},
        )
        for _ in range(count)
    ]


async def record(db: asyncpg.Pool, settings: Settings, events: list[NewEvent]) -> list[uuid.UUID]:
    """Record the events in the log and let the dispatcher (with the xAPI sink) read past them,
    as a worker would: the xAPI sender then finds them after its place."""
    ids = [await record_event(db, event.type, event.data) for event in events]
    dispatcher = EventDispatcher(db, [XapiSink(None, settings)])
    while await dispatcher.dispatch_once():
        pass
    return ids


async def unsent(db: asyncpg.Pool) -> int:
    return await event_cursors.unread_count(db, READER, sorted(xapi.MAPPED_TYPES))


@pytest.fixture
async def sender(db: asyncpg.Pool, ralph: Ralph) -> AsyncIterator[XapiSender]:
    client = LrsClient(ralph.endpoint, ralph.username, ralph.password, timeout=10)
    sending = XapiSender(db, client, BASE, retry_base=0.05, retry_max=0.5)
    yield sending
    await sending.stop()


async def drain(sender: XapiSender) -> None:
    while await sender.send_due():
        pass


def held_ids(ralph: Ralph) -> list[str]:
    return [statement["id"] for statement in ralph.all_statements()]


async def test_recorded_events_reach_the_lrs_once_each_and_conform(
    db: asyncpg.Pool, settings: Settings, ralph: Ralph, sender: XapiSender
) -> None:
    events: list[NewEvent] = [*enrollments(3)]
    enrolled = events[0].data
    lesson = {"lessonId": str(uuid.uuid4()), "durationSeconds": 120}
    events += [
        NewEvent("lesson.progressed", enrolled | lesson | {"milestone": 25}),
        NewEvent("lesson.completed", enrolled | lesson),
        NewEvent("course.completed", enrolled),
        NewEvent("certificate.issued", enrolled | {"verifyUrl": f"{BASE}/certificates/verify/x"}),
        NewEvent("course.published", {"courseId": enrolled["courseId"]}),  # no statement
    ]
    before = set(held_ids(ralph))
    ids = await record(db, settings, events)
    assert await unsent(db) == 7

    await drain(sender)

    assert await unsent(db) == 0  # sent: the sender's place is past them
    assert await sql.counts(db) == {}  # nothing refused
    expected = {xapi.statement_id(event_id) for event_id in ids[:7]}
    held = [i for i in held_ids(ralph) if i not in before]
    assert sorted(held) == sorted(expected)
    stored = [ralph.statement(i) for i in expected]
    assert xapi_problems([s for s in stored if s is not None]) == [[]] * 7
    assert await sender.send_due() == 0  # and nothing is sent twice


async def test_a_batch_sent_again_after_its_answer_was_lost_is_stored_once(
    db: asyncpg.Pool, settings: Settings, ralph: Ralph, sender: XapiSender
) -> None:
    ids = await record(db, settings, enrollments(5))
    # A sender posts the batch and dies before it moves its place: the LRS has them, the log
    # still has them after the place; the sender's connection, and with it its turn, is gone.
    assert settings.database_url
    dying = await asyncpg.connect(settings.database_url)
    await dying.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        assert await sql.try_lock_sending(dying)
        row = await event_cursors.place(dying, READER)
        batch = await cursor.read(dying, Place.of(row), row["latest_tick"], 10)
        assert await sender.send_due() == 0  # its turn: nobody else sends meanwhile
        statements = [statement for statement, _, _ in statements_of(batch, BASE)]
        assert len(statements) == 5
        assert (await sender.client.post(statements)).stored
    finally:
        await dying.close()

    await drain(sender)  # another sender sends the same batch

    assert await unsent(db) == 0
    expected = {xapi.statement_id(event_id) for event_id in ids}
    assert sorted(i for i in held_ids(ralph) if i in expected) == sorted(expected)


async def test_a_refused_statement_holds_up_none_of_its_batch(
    db: asyncpg.Pool, settings: Settings, ralph: Ralph, sender: XapiSender
) -> None:
    ids = await record(db, settings, enrollments(4))
    # The LRS already holds a different statement under the id of the third one's: it answers
    # that batch 409, and that statement alone is refused.
    clash = xapi.statement_id(ids[2])
    other = xapi.statement_for(
        uuid.uuid4(), "enrollment.created", datetime.now(UTC), enrollments(1)[0].data, base_url=BASE
    )
    assert other is not None
    assert (await sender.client.post([other | {"id": clash}])).stored

    await drain(sender)

    assert await unsent(db) == 0
    assert await sql.counts(db) == {"REJECTED": 1}  # kept for an operator
    error = await db.fetchval("SELECT last_error FROM xapi_statements WHERE event_id = $1", ids[2])
    assert "refused" in error
    assert {xapi.statement_id(i) for i in (ids[0], ids[1], ids[3])} <= set(held_ids(ralph))


async def test_nothing_waits_on_a_dead_lrs_but_the_log(
    db: asyncpg.Pool, settings: Settings, tmp_path: Any
) -> None:
    """No LRS listening: the sender's place stays, with a backoff and the reason."""
    from lms.netutil import free_port

    client = LrsClient(f"http://127.0.0.1:{free_port()}/xAPI", "u", "p", timeout=2)
    sender = XapiSender(db, client, BASE, retry_base=30, retry_max=60)
    try:
        await record(db, settings, enrollments(4))
        assert await sender.send_due() == 4
        assert await sender.send_due() == 0  # backing off
        row = await db.fetchrow(
            "SELECT attempts, next_attempt_at - now() AS wait, last_error AS why"
            " FROM event_cursors WHERE name = $1",
            READER,
        )
        assert await unsent(db) == 4
        assert row["attempts"] == 1
        assert row["wait"].total_seconds() > 10
        assert "Connect" in row["why"]
    finally:
        await sender.stop()


async def test_a_dead_lrss_backlog_is_not_counted_again_at_every_poll(
    db: asyncpg.Pool, settings: Settings
) -> None:
    """The queue-depth gauge is a count of the backlog; once counting is dear, the next count
    waits in proportion (lms.observability.paced), not a poll: an LRS down for days leaves
    millions of statements, 2.6 s a count at 2.5 million."""
    from lms.domain.events.xapi_sink import XAPI_QUEUE_DEPTH
    from lms.netutil import free_port

    client = LrsClient(f"http://127.0.0.1:{free_port()}/xAPI", "u", "p", timeout=2)
    sender = XapiSender(db, client, BASE, poll_seconds=0.0, retry_base=30, retry_max=60)
    # Here a count of a few events is quick: have any count weigh as a dear one.
    sender._depth.dear_seconds = 0.0
    sender._depth.cost_factor = 1e6
    try:
        await record(db, settings, enrollments(3))
        await sender._refresh_depth()
        assert XAPI_QUEUE_DEPTH._value.get() == 3
        await record(db, settings, enrollments(2))
        await sender._refresh_depth()
        assert XAPI_QUEUE_DEPTH._value.get() == 3  # not counted again yet
        assert await unsent(db) == 5
    finally:
        await sender.stop()


async def test_a_sender_stopped_mid_turn_never_leaves_the_turn_taken(
    db: asyncpg.Pool, settings: Settings, ralph: Ralph, sender: XapiSender
) -> None:
    """A sender cancelled at any moment of a batch (as `lms worker` stops it) gives its turn
    back: its connection returns to the pool without the lock, or does not return at all."""
    client = LrsClient(ralph.endpoint, ralph.username, ralph.password, timeout=10)
    stopping = XapiSender(db, client, BASE)
    try:
        for ticks in range(40):  # cancelled after 0 to 39 turns of the loop, 0.2 ms apart
            await record(db, settings, enrollments(1))
            turn = asyncio.create_task(stopping.send_due())
            for _ in range(ticks):
                await asyncio.sleep(0.0002)
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
            await drain(sender)  # another sender gets the turn, whatever the moment was
            assert await unsent(db) == 0, ticks
    finally:
        await client.close()
