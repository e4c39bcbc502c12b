"""lesson.progressed milestones (issue 22): the heartbeat statement that credits watch time also
records one `lesson.progressed` event per milestone (25, 50, 75 % of the lesson's known length)
the credit carries the lesson over, in the same statement and commit; never per heartbeat, none
for a lesson whose length is unknown or a heartbeat that gained nothing, and each milestone of an
(enrollment, lesson) once, also when one batch carries several heartbeats of one enrollment."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from lms.domain.learning.group_commit import HeartbeatBatcher
from lms.domain.learning.progress import _RULES
from tests.conftest import TestUser
from tests.integration.learning.helpers import (
    beat,
    course_with_lessons,
    enroll,
    lesson_row,
    wait_seconds,
)


async def milestones(db: asyncpg.Pool, user: TestUser) -> list[dict[str, Any]]:
    """The user's lesson.progressed events' data, in the order they were recorded."""
    rows = await db.fetch(
        "SELECT data FROM events WHERE type = 'lesson.progressed' AND data->>'userId' = $1"
        " ORDER BY seq",
        str(user.id),
    )
    return [dict(r["data"]) for r in rows]


async def play(
    api: httpx.AsyncClient, db: asyncpg.Pool, user: TestUser, lesson_id: str, position: float
) -> None:
    """As a player would: the time since the previous heartbeat passes, then it reports."""
    row = await db.fetchrow(
        "SELECT position_seconds FROM lesson_progress WHERE user_id = $1 AND lesson_id = $2",
        user.id,
        uuid.UUID(lesson_id),
    )
    if row is not None and position > row["position_seconds"]:
        await wait_seconds(db, user, lesson_id, position - row["position_seconds"])
    else:
        await wait_seconds(db, user, lesson_id, 2.0)
    response = await beat(api, user, lesson_id, position)
    assert response.status_code == 204, response.text


async def test_a_heartbeat_sequence_records_each_milestone_once(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, [lesson] = await course_with_lessons(api, db, creator, admin, [200.0])
    enrollment = await enroll(api, learner, course["id"])
    lid = lesson["id"]
    await play(api, db, learner, lid, 0.0)
    await play(api, db, learner, lid, 40.0)  # 20 %: nothing yet
    assert await milestones(db, learner) == []
    await play(api, db, learner, lid, 60.0)  # 30 %: crosses 25
    await play(api, db, learner, lid, 70.0)  # 35 %: nothing more
    await play(api, db, learner, lid, 20.0)  # seeks back: replays watched seconds, gains nothing
    await play(api, db, learner, lid, 60.0)  # replays up to 60: gains nothing
    await play(api, db, learner, lid, 60.0)  # stands still: gains nothing
    assert [m["milestone"] for m in await milestones(db, learner)] == [25]
    await play(api, db, learner, lid, 160.0)  # 80 % in one heartbeat: crosses 50 and 75
    await play(api, db, learner, lid, 170.0)
    events = await milestones(db, learner)
    assert [m["milestone"] for m in events] == [25, 50, 75]
    watched = (await lesson_row(db, learner, lid))["watched_seconds"]
    assert watched >= 150.0
    first, second, third = events
    assert first == {
        "enrollmentId": enrollment["id"],
        "userId": str(learner.id),
        "courseId": course["id"],
        "lessonId": lid,
        "milestone": 25,
        "watchedSeconds": first["watchedSeconds"],
        "durationSeconds": 200.0,
    }
    assert 50.0 <= first["watchedSeconds"] < 100.0
    assert second["watchedSeconds"] == third["watchedSeconds"] >= 150.0


async def test_no_milestone_for_a_lesson_of_unknown_length(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, [lesson] = await course_with_lessons(api, db, creator, admin, [100.0])
    await enroll(api, learner, course["id"])
    # The video is still processing: its length is not known yet.
    await db.execute(
        "UPDATE lessons SET duration_seconds = NULL WHERE id = $1", uuid.UUID(lesson["id"])
    )
    for position in (0.0, 30.0, 60.0, 90.0):
        await play(api, db, learner, lesson["id"], position)
    assert (await lesson_row(db, learner, lesson["id"]))["watched_seconds"] >= 80.0
    assert await milestones(db, learner) == []


async def test_a_batch_of_several_learners_records_each_milestone_once(
    api: httpx.AsyncClient, db: asyncpg.Pool, make_user: Any, creator: TestUser, admin: TestUser
) -> None:
    """One statement carries heartbeats of three learners, two of them from one enrollment (the
    second too soon, as in sequence): each learner's crossed milestones are recorded once."""
    course, [lesson] = await course_with_lessons(api, db, creator, admin, [100.0])
    opener, one, two, three = [await make_user("LEARNER") for _ in range(4)]
    lid = lesson["id"]
    for learner in (opener, one, two, three):
        await enroll(api, learner, course["id"])
        await play(api, db, learner, lid, 0.0)
    for learner, seconds in ((one, 30.0), (two, 60.0), (three, 10.0), (opener, 5.0)):
        await wait_seconds(db, learner, lid, seconds)

    batcher = HeartbeatBatcher(db, _RULES, max_in_flight=1)
    lesson_id = uuid.UUID(lid)
    first = asyncio.create_task(batcher.submit(lesson_id, opener.id, 5.0))  # goes alone
    await asyncio.sleep(0)
    rows = await asyncio.gather(
        batcher.submit(lesson_id, one.id, 30.0),  # crosses 25
        batcher.submit(lesson_id, one.id, 30.0),  # the same again: too soon
        batcher.submit(lesson_id, two.id, 60.0),  # crosses 25 and 50
        batcher.submit(lesson_id, three.id, 10.0),  # crosses nothing
    )
    await first
    assert batcher.statements == 2  # the four shared one statement
    assert [r["on_time"] for r in rows] == [True, False, True, True]
    assert [m["milestone"] for m in await milestones(db, one)] == [25]
    assert [m["milestone"] for m in await milestones(db, two)] == [25, 50]
    assert await milestones(db, three) == []
    assert await milestones(db, opener) == []
    # A second batch with the same duplicates, gaining nothing new past 25: nothing more.
    await wait_seconds(db, one, lid, 5.0)
    again = await asyncio.gather(
        batcher.submit(lesson_id, one.id, 35.0), batcher.submit(lesson_id, one.id, 35.0)
    )
    assert [r["on_time"] for r in again] == [True, False]
    assert [m["milestone"] for m in await milestones(db, one)] == [25]


async def test_a_lesson_completed_by_heartbeat_records_lesson_completed(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, [lesson, _other] = await course_with_lessons(api, db, creator, admin, [40.0, 40.0])
    await enroll(api, learner, course["id"])
    lid = lesson["id"]
    await play(api, db, learner, lid, 0.0)
    await play(api, db, learner, lid, 40.0)
    assert (await lesson_row(db, learner, lid))["completed"]
    assert [m["milestone"] for m in await milestones(db, learner)] == [25, 50, 75]
    completed = await db.fetch(
        "SELECT data FROM events WHERE type = 'lesson.completed' AND data->>'userId' = $1",
        str(learner.id),
    )
    assert [r["data"]["lessonId"] for r in completed] == [lid]
