"""The xAPI sink against a real LRS (Ralph): statements queued from events reach it in batches,
once each, through lost answers and refused statements, and leave the queue once it has them; a
dead LRS only makes them wait (the kill-mid-burst test goes through the API:
test_end_to_end.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from lms.db.queries import xapi as sql
from lms.domain.events import xapi
from lms.domain.events.xapi_sink import LrsClient, XapiSender, enqueue
from lms.settings import Settings
from tests.support.lrs import Ralph, xapi_problems

BASE = "https://lms.example.test"


@dataclass(frozen=True)
class FakeEvent:
    """An event as the event log hands it to sinks (only what they read)."""

    type: str
    data: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def enrollments(count: int) -> list[FakeEvent]:
    course = str(uuid.uuid4())
    return [
        FakeEvent(
            "enrollment.created",
            {"userId": str(uuid.uuid4()), "courseId": course, "enrollmentId": str(uuid.uuid4())},
        )
        for _ in range(count)
    ]


@pytest.fixture
async def sender(db: asyncpg.Pool, ralph: Ralph) -> AsyncIterator[XapiSender]:
    client = LrsClient(ralph.endpoint, ralph.username, ralph.password, timeout=10)
    sending = XapiSender(db, client, retry_base=0.05, retry_max=0.5)
    yield sending
    await sending.stop()


async def drain(sender: XapiSender) -> None:
    while await sender.send_due():
        pass


def held_ids(ralph: Ralph) -> list[str]:
    return [statement["id"] for statement in ralph.all_statements()]


async def test_queued_events_reach_the_lrs_once_each_and_conform(
    db: asyncpg.Pool, ralph: Ralph, sender: XapiSender
) -> None:
    events: list[FakeEvent] = [*enrollments(3)]
    enrolled = events[0].data
    lesson = {"lessonId": str(uuid.uuid4()), "durationSeconds": 120}
    events += [
        FakeEvent("lesson.progressed", enrolled | lesson | {"milestone": 25}),
        FakeEvent("lesson.completed", enrolled | lesson),
        FakeEvent("course.completed", enrolled),
        FakeEvent("certificate.issued", enrolled | {"verifyUrl": f"{BASE}/certificates/verify/x"}),
        FakeEvent("course.published", {"courseId": enrolled["courseId"]}),  # no statement
    ]
    before = set(held_ids(ralph))
    assert await enqueue(db, events, BASE) == 7
    assert await enqueue(db, events, BASE) == 0  # an event still queued is not queued twice

    await drain(sender)

    assert await sql.counts(db) == {}  # sent: the LRS keeps them, the queue forgets them
    expected = {xapi.statement_id(event.id) for event in events[:7]}
    held = [i for i in held_ids(ralph) if i not in before]
    assert sorted(held) == sorted(expected)
    stored = [ralph.statement(i) for i in expected]
    assert xapi_problems([s for s in stored if s is not None]) == [[]] * 7


async def test_a_batch_sent_again_after_its_answer_was_lost_is_stored_once(
    db: asyncpg.Pool, settings: Settings, ralph: Ralph, sender: XapiSender
) -> None:
    events = enrollments(5)
    await enqueue(db, events, BASE)
    # A sender posts the batch and dies before it records the answer: the LRS has them, the
    # queue still holds them; the sender's connection, and with it its turn, is gone.
    assert settings.database_url
    dying = await asyncpg.connect(settings.database_url)
    await dying.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    try:
        assert await sql.try_lock_sending(dying)
        rows = await sql.due(dying, limit=10)
        assert await sender.send_due() == 0  # its turn: nobody else sends meanwhile
        assert (await sender.client.post([row["statement"] for row in rows])).stored
    finally:
        await dying.close()

    await drain(sender)  # another sender sends the same batch

    assert await sql.counts(db) == {}
    ids = {xapi.statement_id(event.id) for event in events}
    assert sorted(i for i in held_ids(ralph) if i in ids) == sorted(ids)


async def test_a_refused_statement_holds_up_none_of_its_batch(
    db: asyncpg.Pool, ralph: Ralph, sender: XapiSender
) -> None:
    good = enrollments(3)
    await enqueue(db, good, BASE)
    broken_event = uuid.uuid4()
    broken = {"id": str(uuid.uuid4()), "actor": {"objectType": "Agent"}, "verb": {}, "object": {}}
    await sql.enqueue(db, [(broken_event, uuid.UUID(broken["id"]), "enrollment.created", broken)])

    await drain(sender)

    assert await sql.counts(db) == {"REJECTED": 1}  # kept for an operator
    error = await db.fetchval(
        "SELECT last_error FROM xapi_statements WHERE event_id = $1", broken_event
    )
    assert "refused" in error
    ids = {xapi.statement_id(event.id) for event in good}
    assert ids <= set(held_ids(ralph))


async def test_nothing_waits_on_a_dead_lrs_but_the_queue(db: asyncpg.Pool, tmp_path: Any) -> None:
    """No LRS listening: the batch stays PENDING with a backoff and the reason."""
    from lms.netutil import free_port

    client = LrsClient(f"http://127.0.0.1:{free_port()}/xAPI", "u", "p", timeout=2)
    sender = XapiSender(db, client, retry_base=30, retry_max=60)
    try:
        await enqueue(db, enrollments(4), BASE)
        assert await sender.send_due() == 4
        assert await sender.send_due() == 0  # backing off
        row = await db.fetchrow(
            "SELECT count(*) AS n, min(next_attempt_at - now()) AS wait, min(last_error) AS why"
            " FROM xapi_statements WHERE status = 'PENDING'"
        )
        assert row["n"] == 4
        assert row["wait"].total_seconds() > 10
        assert "Connect" in row["why"]
    finally:
        await sender.stop()


async def test_a_sender_stopped_mid_turn_never_leaves_the_turn_taken(
    db: asyncpg.Pool, ralph: Ralph, sender: XapiSender
) -> None:
    """A sender cancelled at any moment of a batch (as `lms worker` stops it) gives its turn
    back: its connection returns to the pool without the lock, or does not return at all."""
    client = LrsClient(ralph.endpoint, ralph.username, ralph.password, timeout=10)
    stopping = XapiSender(db, client)
    try:
        for ticks in range(40):  # cancelled after 0 to 39 turns of the loop, 0.2 ms apart
            await enqueue(db, enrollments(1), BASE)
            turn = asyncio.create_task(stopping.send_due())
            for _ in range(ticks):
                await asyncio.sleep(0.0002)
            turn.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn
            await drain(sender)  # another sender gets the turn, whatever the moment was
            assert await sql.counts(db) == {}, ticks
    finally:
        await client.close()
