"""From the API to the LRS: changes write events, the app's event dispatcher queues their
statements (XapiSink, as app.py plugs it in when LMS_XAPI_ENDPOINT is set), a sender (what
`lms worker` runs) sends them to a real Ralph. Ralph is killed in the middle of a burst of 1,000
enrollments and comes back: it holds exactly one statement per event."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from lms.db.queries import event_cursors
from lms.db.queries import xapi as sql
from lms.domain.events import xapi
from lms.domain.events.dispatcher import EventDispatcher
from lms.domain.events.xapi_sink import READER, LrsClient, XapiSender, XapiSink, run_sender
from lms.settings import Settings
from tests.conftest import TestUser
from tests.integration.learning.helpers import (
    beat,
    complete,
    course_with_lessons,
    enroll,
    wait_seconds,
)
from tests.support.lrs import Ralph, xapi_problems


@pytest.fixture
async def to_ralph(
    app: Litestar, api: httpx.AsyncClient, settings: Settings, ralph: Ralph
) -> AsyncIterator[XapiSender]:
    """A worker's dispatcher with the xAPI sink (as with LMS_XAPI_ENDPOINT set) and a running
    sender to Ralph (fast backoff, so a test does not wait minutes)."""
    dispatcher = EventDispatcher(app.state.ctx.db, [XapiSink(None, settings)], poll_seconds=0.1)
    dispatcher.start()
    client = LrsClient(ralph.endpoint, ralph.username, ralph.password, timeout=10)
    sender = XapiSender(app.state.ctx.db, client, settings.base_url, retry_base=0.05, retry_max=0.5)
    sender.start()
    try:
        yield sender
    finally:
        try:
            await dispatcher.stop()
        finally:
            await sender.stop()  # never left running into the next test's queue


async def settled(
    db: asyncpg.Pool, ralph: Ralph, statement_ids: set[str], within: float = 120
) -> dict[str, int]:
    """The refused statements' counts once Ralph holds every one of `statement_ids` and nothing
    is left to send ({} when all went)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not await unsent(db):
            held = {s["id"] for s in await asyncio.to_thread(ralph.all_statements)}
            if statement_ids <= held:
                return await sql.counts(db)
        await asyncio.sleep(0.3)
    return {**await sql.counts(db), "unsent": await unsent(db)}


async def unsent(db: asyncpg.Pool) -> int:
    """Events with a statement the LRS has not taken yet."""
    return await event_cursors.unread_count(db, READER, sorted(xapi.MAPPED_TYPES))


async def test_a_learner_journey_arrives_as_conforming_statements(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    ralph: Ralph,
    settings: Settings,
    to_ralph: XapiSender,
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [60.0])
    enrollment = await enroll(api, learner, course["id"])
    done = await complete(api, learner, lessons[0]["id"])
    assert done.status_code == 200, done.text
    app_events = await db.fetch(
        "SELECT id, type FROM events WHERE type = ANY($1::text[]) ORDER BY seq",
        sorted(xapi.MAPPED_TYPES),
    )
    assert [e["type"] for e in app_events] == [
        "enrollment.created",
        "lesson.completed",
        "course.completed",
        "certificate.issued",
    ]
    assert await settled(db, ralph, {xapi.statement_id(e["id"]) for e in app_events}) == {}

    stored = [ralph.statement(xapi.statement_id(e["id"])) for e in app_events]
    assert all(s is not None for s in stored)
    statements: list[dict[str, Any]] = [s for s in stored if s is not None]
    assert xapi_problems(statements) == [[]] * 4
    for statement in statements:
        assert statement["actor"]["account"] == {
            "homePage": settings.base_url,
            "name": str(learner.id),
        }
        assert learner.email not in str(statement)
    registered, lesson_done, course_done, earned = statements
    assert registered["context"]["registration"] == enrollment["id"]
    assert registered["object"]["id"] == f"{settings.base_url}/courses/{course['id']}"
    assert lesson_done["object"]["id"].endswith(f"/lessons/{lessons[0]['id']}")
    assert course_done["verb"]["id"] == xapi.VERB_COMPLETED
    assert earned["object"]["id"] == done.json()["certificate"]["verifyUrl"]


async def test_a_milestone_crossed_by_heartbeat_arrives_as_a_progressed_statement(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    ralph: Ralph,
    settings: Settings,
    to_ralph: XapiSender,
) -> None:
    """The lesson.progressed event the heartbeat statement writes (not a hand-made one) maps to
    a statement Ralph accepts: the ADL progressed verb with the Video Profile's extensions."""
    course, [lesson, _] = await course_with_lessons(api, db, creator, admin, [120.0, 60.0])
    enrollment = await enroll(api, learner, course["id"])
    assert (await beat(api, learner, lesson["id"], 0.0)).status_code == 204
    await wait_seconds(db, learner, lesson["id"], 40.0)
    assert (await beat(api, learner, lesson["id"], 40.0)).status_code == 204  # 33 %: 25 crossed
    [event] = await db.fetch(
        "SELECT id, data FROM events WHERE type = 'lesson.progressed' AND data->>'userId' = $1",
        str(learner.id),
    )
    assert event["data"]["milestone"] == 25
    assert await settled(db, ralph, {xapi.statement_id(event["id"])}) == {}

    statement = ralph.statement(xapi.statement_id(event["id"]))
    assert statement is not None
    assert xapi_problems([statement]) == [[]]
    assert statement["verb"]["id"] == xapi.VERB_PROGRESSED
    assert statement["actor"]["account"] == {"homePage": settings.base_url, "name": str(learner.id)}
    assert statement["object"]["id"] == (
        f"{settings.base_url}/courses/{course['id']}/lessons/{lesson['id']}"
    )
    assert statement["result"]["extensions"][xapi.VIDEO_PROGRESS] == 0.25
    assert statement["result"]["extensions"][xapi.VIDEO_TIME] == 30.0
    assert statement["context"]["extensions"][xapi.VIDEO_LENGTH] == 120.0
    assert statement["context"]["registration"] == enrollment["id"]


async def many_learners(db: asyncpg.Pool, count: int, password_hash: str) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    rows = await db.fetch(
        """
        INSERT INTO users (email, username, password_hash, full_name, name, role,
                           email_verified, is_profile_complete, is_active)
        SELECT 'xapi-' || $1 || '-' || i || '@example.test', 'xapi_' || $1 || '_' || i, $2,
               'Learner ' || i, 'Learner ' || i, 'LEARNER', true, true, true
        FROM generate_series(1, $3) AS i
        RETURNING email
        """,
        tag,
        password_hash,
        count,
    )
    return [row["email"] for row in rows]


@pytest.mark.slow
async def test_killing_ralph_mid_burst_of_1000_enrollments_loses_and_duplicates_nothing(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    ralph: Ralph,
    password_hash: str,
    to_ralph: XapiSender,
) -> None:
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    emails = await many_learners(db, 1000, password_hash)
    before = set(await asyncio.to_thread(lambda: [s["id"] for s in ralph.all_statements()]))
    at_kill = at_restart = None
    for chunk in range(10):
        answer = await api.post(
            f"/admin/courses/{course['id']}/enrollments",
            json={"emails": emails[chunk * 100 : (chunk + 1) * 100]},
            headers=admin.headers,
        )
        assert answer.status_code == 200, answer.text
        await asyncio.sleep(0.3)
        if chunk == 3:
            ralph.kill()
            at_kill = await unsent(db)
        if chunk == 7:
            at_restart = await unsent(db)
            await asyncio.to_thread(ralph.start)

    event_ids = [
        r["id"] for r in await db.fetch("SELECT id FROM events WHERE type = 'enrollment.created'")
    ]
    assert len(event_ids) == 1000
    counts = await settled(db, ralph, {xapi.statement_id(i) for i in event_ids})
    assert counts == {}, (at_kill, at_restart, counts)
    # Ralph really died mid-burst: statements were waiting for it when it came back.
    assert at_restart is not None
    assert at_restart > 0, (at_kill, at_restart)
    held = [s["id"] for s in await asyncio.to_thread(ralph.all_statements) if s["id"] not in before]
    assert len(held) == len(set(held)) == 1000
    assert set(held) == {xapi.statement_id(i) for i in event_ids}


async def test_the_worker_sender_is_woken_over_jetstream(
    app: Litestar,
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    ralph: Ralph,
    settings: Settings,
) -> None:
    """As in `lms worker`: run_sender pulls the sink's "statements are queued" message from the
    jobs stream and sends at once, long before its own polling would have."""
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    dispatcher = EventDispatcher(db, [XapiSink(app.state.nats, settings)], poll_seconds=0.1)
    dispatcher.start()
    client = LrsClient(ralph.endpoint, ralph.username, ralph.password, timeout=10)
    sender = XapiSender(db, client, settings.base_url, poll_seconds=120)
    stop = asyncio.Event()
    running = asyncio.create_task(run_sender(app.state.broker.client, sender, settings, stop))
    try:
        await asyncio.sleep(0.5)  # the sender's first look at the (empty) queue
        enrollment = await enroll(api, learner, course["id"])
        event_id = await db.fetchval(
            "SELECT id FROM events"
            " WHERE type = 'enrollment.created' AND data->>'enrollmentId' = $1",
            enrollment["id"],
        )
        assert await settled(db, ralph, {xapi.statement_id(event_id)}, within=10) == {}
        assert ralph.statement(xapi.statement_id(event_id)) is not None
    finally:
        await dispatcher.stop()
        stop.set()
        await running
