"""Group commit of heartbeats (lms.domain.learning.group_commit): heartbeats arriving together
share one statement and one commit, each answered after that commit with the outcome it would
have had alone or in sequence; a member's own failure fails only that member, a failure of the
database fails every member of the batch (503s), and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx

from lms.domain.learning.group_commit import HeartbeatBatcher, batcher_for
from lms.domain.learning.progress import _RULES
from tests.conftest import TestUser
from tests.integration.learning.helpers import beat, course_with_lessons, enroll, lesson_row

BATCH_TEXT = "%jsonb_array_elements($1::text::jsonb)%"


def one_at_a_time(db: asyncpg.Pool) -> HeartbeatBatcher:
    """A batcher of its own (not the app's) with one statement in flight at a time: the first
    heartbeat goes alone, the ones submitted while it runs make the next batch."""
    return HeartbeatBatcher(db, _RULES, max_in_flight=1)


async def learners_with_a_lesson(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    make_user: Any,
    creator: TestUser,
    admin: TestUser,
    n: int,
    durations: list[float] | None = None,
) -> tuple[list[TestUser], list[dict[str, Any]]]:
    course, lessons = await course_with_lessons(api, db, creator, admin, durations or [600.0])
    learners = [await make_user("LEARNER") for _ in range(n)]
    for learner in learners:
        await enroll(api, learner, course["id"])
    return learners, lessons


@contextlib.asynccontextmanager
async def enrollments_locked(
    db: asyncpg.Pool, users: list[TestUser]
) -> AsyncIterator[asyncpg.Connection]:
    """A transaction holding the users' enrollment rows, so a heartbeat statement waits; the
    test may COMMIT it, else it is rolled back."""
    async with db.acquire() as conn:
        await conn.execute("BEGIN")
        try:
            await conn.execute(
                "SELECT 1 FROM enrollments WHERE user_id = ANY($1::uuid[]) FOR UPDATE",
                [u.id for u in users],
            )
            yield conn
        finally:
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK")


async def batch_statement_waiting(db: asyncpg.Pool) -> list[int]:
    """The backends of heartbeat batches waiting on a lock (polls until there is one)."""
    for _ in range(200):
        pids = await db.fetch(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
            BATCH_TEXT,
        )
        if pids:
            return [p["pid"] for p in pids]
        await asyncio.sleep(0.01)
    raise AssertionError("no heartbeat batch is waiting")


async def test_a_lone_heartbeat_is_sent_at_once(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    """No batch window for a heartbeat that comes alone: its statement starts on submission."""
    [learner], [lesson] = await learners_with_a_lesson(api, db, make_user, creator, admin, 1)
    batcher = one_at_a_time(db)
    task = asyncio.create_task(batcher.submit(uuid.UUID(lesson["id"]), learner.id, 5.0))
    await asyncio.sleep(0)  # the submission ran up to its wait
    assert batcher.statements == 1 and not batcher._pending
    row = await task
    assert row["found"] and row["in_video"] and row["on_time"]
    assert (await lesson_row(db, learner, lesson["id"]))["position_seconds"] == 5.0


async def test_concurrent_heartbeats_of_many_learners_share_statements(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    learners, [lesson] = await learners_with_a_lesson(api, db, make_user, creator, admin, 40)
    batcher = batcher_for(db, lambda: _RULES)  # the app's
    statements, carried = batcher.statements, batcher.heartbeats
    responses = await asyncio.gather(
        *(beat(api, learner, lesson["id"], 10.0 + i) for i, learner in enumerate(learners))
    )
    assert [r.status_code for r in responses] == [204] * 40
    assert batcher.heartbeats - carried == 40
    assert batcher.statements - statements < 40  # some shared a statement
    for i, learner in enumerate(learners):  # every acknowledged heartbeat is stored
        assert (await lesson_row(db, learner, lesson["id"]))["position_seconds"] == 10.0 + i


async def test_heartbeats_of_one_enrollment_in_one_batch_behave_as_in_sequence(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    """The first of an enrollment's heartbeats in a batch is taken, the others (same lesson or
    another lesson of the course) are too soon, as they would be one after the other; a refused
    one ahead of it (past the video's end) does not count as taken."""
    learners, lessons = await learners_with_a_lesson(
        api, db, make_user, creator, admin, 2, [600.0, 300.0]
    )
    first, other = learners
    one, two = (uuid.UUID(lesson["id"]) for lesson in lessons)
    batcher = one_at_a_time(db)
    opener = asyncio.create_task(batcher.submit(two, other.id, 1.0))  # goes alone
    await asyncio.sleep(0)
    rows = await asyncio.gather(
        batcher.submit(two, first.id, 400.0),  # past the end: 400, not taken
        batcher.submit(one, first.id, 7.0),  # taken
        batcher.submit(one, first.id, 8.0),  # same lesson: too soon
        batcher.submit(two, first.id, 9.0),  # other lesson, same enrollment: too soon
        batcher.submit(one, other.id, 3.0),  # the other learner's: too soon after the opener
    )
    await opener
    assert batcher.statements == 2
    assert [(r["found"], r["in_video"], r["on_time"]) for r in rows] == [
        (True, False, True),
        (True, True, True),
        (True, True, False),
        (True, True, False),
        (True, True, False),
    ]
    assert (await lesson_row(db, first, lessons[0]["id"]))["position_seconds"] == 7.0
    assert (
        await db.fetchval("SELECT count(*) FROM lesson_progress WHERE user_id = $1", first.id) == 1
    )


async def test_a_member_whose_lesson_was_deleted_meanwhile_fails_alone(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    """A lesson deleted while the batch waited for its learner's enrollment: the batch statement
    fails (foreign key) and runs again heartbeat by heartbeat: that member finds nothing (the
    404 a heartbeat alone gets), the others are written."""
    victims, [gone] = await learners_with_a_lesson(api, db, make_user, creator, admin, 1)
    others, [kept] = await learners_with_a_lesson(api, db, make_user, creator, admin, 4)
    batcher = one_at_a_time(db)
    async with enrollments_locked(db, victims) as conn:
        await conn.execute("DELETE FROM lessons WHERE id = $1", uuid.UUID(gone["id"]))
        # The first goes alone (nothing in flight); the rest collect into one batch.
        members = [(kept, others[0]), (gone, victims[0])] + [(kept, u) for u in others[1:]]
        batch = asyncio.gather(
            *(batcher.submit(uuid.UUID(lesson["id"]), u.id, 4.0) for lesson, u in members)
        )
        await batch_statement_waiting(db)
        await conn.execute("COMMIT")
    rows = await batch
    assert [r["found"] for r in rows] == [True, False, True, True, True]
    assert all(r["on_time"] for r in rows if r["found"])
    for learner in others:
        assert (await lesson_row(db, learner, kept["id"]))["position_seconds"] == 4.0


async def test_the_api_answers_404_for_the_deleted_member_and_204_for_the_others(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    victims, [gone] = await learners_with_a_lesson(api, db, make_user, creator, admin, 1)
    others, [kept] = await learners_with_a_lesson(api, db, make_user, creator, admin, 3)
    async with enrollments_locked(db, victims) as conn:
        await conn.execute("DELETE FROM lessons WHERE id = $1", uuid.UUID(gone["id"]))
        calls = asyncio.gather(
            beat(api, victims[0], gone["id"], 4.0),
            *(beat(api, learner, kept["id"], 4.0) for learner in others),
        )
        await batch_statement_waiting(db)
        await conn.execute("COMMIT")
    responses = await calls
    assert [r.status_code for r in responses] == [404, 204, 204, 204]


async def test_a_database_failure_mid_batch_fails_every_member_and_writes_nothing(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    opener, *learners = (await learners_with_a_lesson(api, db, make_user, creator, admin, 5))[0]
    lesson_id = uuid.UUID(await db.fetchval("SELECT id::text FROM lessons"))
    batcher = one_at_a_time(db)
    async with enrollments_locked(db, learners):
        # The opener goes alone and is written; the others make one batch, which waits.
        batch = asyncio.gather(
            *(batcher.submit(lesson_id, u.id, 4.0) for u in [opener, *learners]),
            return_exceptions=True,
        )
        [pid] = await batch_statement_waiting(db)
        await db.execute("SELECT pg_terminate_backend($1)", pid)
        first, *outcomes = await batch
    assert not isinstance(first, BaseException) and first["on_time"]
    assert all(isinstance(o, asyncpg.PostgresError | asyncpg.InterfaceError) for o in outcomes)
    assert await db.fetchval("SELECT count(*) FROM lesson_progress") == 1
    assert (
        await db.fetchval("SELECT count(*) FROM enrollments WHERE last_heartbeat_at IS NOT NULL")
        == 1
    )
    # The batcher goes on: the next heartbeats are written.
    rows = await asyncio.gather(*(batcher.submit(lesson_id, u.id, 5.0) for u in learners))
    assert all(r["on_time"] for r in rows)


async def test_the_api_answers_503_to_every_member_of_a_batch_the_database_failed(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    learners, [lesson] = await learners_with_a_lesson(api, db, make_user, creator, admin, 3)
    async with enrollments_locked(db, learners):
        calls = asyncio.ensure_future(
            asyncio.gather(*(beat(api, u, lesson["id"], 4.0) for u in learners))
        )
        while not calls.done():  # each statement carrying them loses its connection
            pids = await db.fetch(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                BATCH_TEXT,
            )
            for pid in pids:
                await db.execute("SELECT pg_terminate_backend($1)", pid["pid"])
            await asyncio.wait([calls], timeout=0.02)
        responses = calls.result()
    assert [r.status_code for r in responses] == [503] * 3
    assert all(r.headers["retry-after"] for r in responses)
    assert await db.fetchval("SELECT count(*) FROM lesson_progress") == 0


async def test_a_client_that_goes_away_does_not_break_its_batch(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    """Cancelling a caller whose heartbeat is in flight leaves the statement alone (the
    heartbeat is written, as one whose answer was lost on the wire); a caller cancelled before
    its batch left is dropped from it; the others are answered."""
    learners, [lesson] = await learners_with_a_lesson(api, db, make_user, creator, admin, 3)
    lesson_id = uuid.UUID(lesson["id"])
    sent, kept, dropped = learners
    batcher = one_at_a_time(db)
    async with enrollments_locked(db, [sent]) as conn:
        in_flight = asyncio.create_task(batcher.submit(lesson_id, sent.id, 4.0))
        await batch_statement_waiting(db)
        waiting = asyncio.create_task(batcher.submit(lesson_id, kept.id, 4.0))
        gone = asyncio.create_task(batcher.submit(lesson_id, dropped.id, 4.0))
        await asyncio.sleep(0)
        in_flight.cancel()
        gone.cancel()
        await conn.execute("COMMIT")
    assert (await waiting)["on_time"]
    for task in (in_flight, gone):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert (await lesson_row(db, sent, lesson["id"]))["position_seconds"] == 4.0
    assert (await lesson_row(db, kept, lesson["id"]))["position_seconds"] == 4.0
    assert (
        await db.fetchval("SELECT count(*) FROM lesson_progress WHERE user_id = $1", dropped.id)
        == 0
    )
    assert batcher.statements == 2
