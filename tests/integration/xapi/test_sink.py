"""The xAPI sink against a real LRS (Ralph): statements queued from events reach it in batches,
once each, through lost answers and refused statements; a dead LRS only makes them wait (the
kill-mid-burst test goes through the API: test_end_to_end.py)."""

from __future__ import annotations

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
    assert await enqueue(db, events, BASE) == 0  # a fan-out that runs twice queues nothing twice

    await drain(sender)

    assert await sql.counts(db) == {"SENT": 7}
    expected = {xapi.statement_id(event.id) for event in events[:7]}
    held = [i for i in held_ids(ralph) if i not in before]
    assert sorted(held) == sorted(expected)
    stored = [ralph.statement(i) for i in expected]
    assert xapi_problems([s for s in stored if s is not None]) == [[]] * 7


async def test_a_batch_sent_again_after_its_answer_was_lost_is_stored_once(
    db: asyncpg.Pool, ralph: Ralph, sender: XapiSender
) -> None:
    events = enrollments(5)
    await enqueue(db, events, BASE)
    # A sender posts the batch and dies before it records the answer: the LRS has them, the
    # queue still says PENDING, leased.
    rows = await sql.claim_due(db, limit=10, lease_seconds=600)
    assert (await sender.client.post([row["statement"] for row in rows])).stored
    await db.execute("UPDATE xapi_statements SET lease_until = now() - interval '1 second'")

    await drain(sender)  # the lease ran out: another sender sends the same batch

    assert await sql.counts(db) == {"SENT": 5}
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

    assert await sql.counts(db) == {"SENT": 3, "REJECTED": 1}
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


async def test_the_housekeeper_forgets_what_the_lrs_has_held_for_30_days(
    db: asyncpg.Pool,
) -> None:
    from lms.housekeeping import sweep_once

    await enqueue(db, enrollments(3), BASE)
    rows = await db.fetch("SELECT event_id FROM xapi_statements ORDER BY event_id")
    old, recent, pending = (row["event_id"] for row in rows)
    await db.execute(
        "UPDATE xapi_statements SET status = 'SENT', sent_at = now() - interval '31 days'"
        " WHERE event_id = $1",
        old,
    )
    await sql.mark_sent(db, [recent])
    await sweep_once(db)
    left = {row["event_id"] for row in await db.fetch("SELECT event_id FROM xapi_statements")}
    assert left == {recent, pending}
