"""Watch time that cannot be manufactured (issue 18): whatever the heartbeats claim, however fast
they come and however many lessons or tabs send them, an enrollment is credited no more watched
seconds than the real time that passed; its heartbeats come at most about once a second (a 429
beyond, changing nothing); a video whose length is not known yet cannot be completed while
watching is required. Honest players (a heartbeat a second, with network jitter) still complete.

Time "passes" by moving the stored clocks back (helpers.wait_seconds), never by long sleeps; what
really elapses during a test only adds to what may be credited, so bounds are checked against
the simulated time plus the real time measured around the requests."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import TestUser
from tests.helpers import eventually
from tests.integration.learning.helpers import (
    beat,
    complete,
    course_with_lessons,
    enroll,
    lesson_row,
    wait_seconds,
    watch_clock,
)


@pytest.fixture
async def watch_required(api: httpx.AsyncClient, admin: TestUser) -> None:
    response = await api.patch(
        "/admin/settings", json={"requireWatchToComplete": True}, headers=admin.headers
    )
    assert response.status_code == 200 and response.json()["requireWatchToComplete"] is True


async def watched_total(db: asyncpg.Pool, user: TestUser) -> float:
    total: float = await db.fetchval(
        "SELECT coalesce(sum(watched_seconds), 0) FROM lesson_progress WHERE user_id = $1", user.id
    )
    return total


async def certificates(db: asyncpg.Pool) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM certificates")
    return count


# --- the attacks of the issue, replayed ------------------------------------------------------


@pytest.mark.usefixtures("watch_required")
async def test_heartbeats_sent_fast_earn_no_more_than_the_time_that_passed(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """146 heartbeats 2 s of video apart, sent as fast as the client can: the issue's attack
    on a 300 s lesson got 290 s credited, the lesson completed and a certificate."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [300.0])
    await enroll(api, learner, course["id"])
    lesson = lessons[0]["id"]
    refused = await complete(api, learner, lesson)
    assert refused.status_code == 409 and "285 more seconds" in refused.json()["detail"]

    started = time.monotonic()
    statuses = [(await beat(api, learner, lesson, 2.0 * i)).status_code for i in range(146)]
    elapsed = time.monotonic() - started

    assert statuses[0] == 204 and set(statuses) <= {204, 429} and 429 in statuses, statuses
    row = await lesson_row(db, learner, lesson)
    assert row["watched_seconds"] <= elapsed, (row["watched_seconds"], elapsed)
    assert not row["completed"]
    assert (await complete(api, learner, lesson)).status_code == 409
    assert await certificates(db) == 0


@pytest.mark.usefixtures("watch_required")
async def test_a_short_lesson_is_not_completed_by_a_burst_of_heartbeats(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """The issue's replay: 11 heartbeats 0, 2, ..., 20 in 0.1 s credited 20 s of a 20 s lesson."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [20.0])
    await enroll(api, learner, course["id"])
    lesson = lessons[0]["id"]
    started = time.monotonic()
    for position in range(0, 21, 2):
        assert (await beat(api, learner, lesson, position)).status_code in (204, 429)
    elapsed = time.monotonic() - started
    row = await lesson_row(db, learner, lesson)
    assert row["watched_seconds"] <= elapsed and not row["completed"]
    state = (await api.get(f"/courses/{course['id']}/progress", headers=learner.headers)).json()
    assert not state["completed"] and state["progress"] == 0
    assert await certificates(db) == 0


async def test_lessons_played_in_parallel_share_one_clock(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """The issue's attack: position 0 on two 20 s lessons, 18 s later position 19.5 on both.
    Each lesson counted its own clock, so both were credited and the course completed: 40 s of
    video in 18 s. One clock per enrollment: together they earn the time that passed."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [20.0, 20.0])
    await enroll(api, learner, course["id"])
    first, second = lessons[0]["id"], lessons[1]["id"]
    started = time.monotonic()
    assert (await beat(api, learner, first, 0)).status_code == 204
    await wait_seconds(db, learner, first, 1)
    assert (await beat(api, learner, second, 0)).status_code == 204
    await wait_seconds(db, learner, first, 18)
    assert (await beat(api, learner, first, 19.5)).status_code == 204
    await wait_seconds(db, learner, first, 1)
    assert (await beat(api, learner, second, 19.5)).status_code == 204
    elapsed = time.monotonic() - started

    simulated = 1 + 18 + 1
    assert await watched_total(db, learner) <= simulated + elapsed
    # The first lesson had 19 s of the clock to itself; the second jumped 19.5 s in 1 s.
    assert (await lesson_row(db, learner, second))["watched_seconds"] == 0
    state = (await api.get(f"/courses/{course['id']}/progress", headers=learner.headers)).json()
    assert not state["completed"] and await certificates(db) == 0


@pytest.mark.usefixtures("watch_required")
async def test_a_video_of_unknown_length_cannot_be_completed_while_watching_is_required(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """A videoUrl whose transcription is queued (or failed) left the length unknown, and the
    rule was skipped: /complete said 200 without a second watched."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [60.0])
    lesson = lessons[0]["id"]
    await db.execute("UPDATE lessons SET duration_seconds = NULL WHERE id = $1", uuid.UUID(lesson))
    await enroll(api, learner, course["id"])

    refused = await complete(api, learner, lesson)
    assert refused.status_code == 409, refused.text
    assert "still processing" in refused.json()["detail"]
    # Watching does not complete it either (any position is taken: the end is not known).
    assert (await beat(api, learner, lesson, 0)).status_code == 204
    for position in (10, 20, 5000):
        await wait_seconds(db, learner, lesson, 10)
        assert (await beat(api, learner, lesson, position)).status_code == 204
    assert not (await lesson_row(db, learner, lesson))["completed"]
    assert (await complete(api, learner, lesson)).status_code == 409
    assert await db.fetchval("SELECT count(*) FROM lesson_progress WHERE completed") == 0

    # The length becomes known (the worker measured it): watching to 95% completes the lesson.
    await db.execute("UPDATE lessons SET duration_seconds = 60 WHERE id = $1", uuid.UUID(lesson))
    assert (await beat(api, learner, lesson, 0)).status_code in (204, 429)
    for position in range(3, 60, 3):
        await wait_seconds(db, learner, lesson, 3)
        assert (await beat(api, learner, lesson, position)).status_code == 204
    assert (await lesson_row(db, learner, lesson))["completed"]
    assert await certificates(db) == 1


async def test_without_require_watch_a_video_of_unknown_length_completes_by_request(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [60.0])
    lesson = lessons[0]["id"]
    await db.execute("UPDATE lessons SET duration_seconds = NULL WHERE id = $1", uuid.UUID(lesson))
    await enroll(api, learner, course["id"])
    assert (await complete(api, learner, lesson)).status_code == 200


# --- the rate: about one heartbeat a second per enrollment ---------------------------------


async def test_a_heartbeat_sooner_than_half_a_second_is_429_and_changes_nothing(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [600.0, 600.0])
    await enroll(api, learner, course["id"])
    first, second = lessons[0]["id"], lessons[1]["id"]
    assert (await beat(api, learner, first, 10)).status_code == 204
    await wait_seconds(db, learner, first, 5)
    assert (await beat(api, learner, first, 15)).status_code == 204
    # At once after it, on any lesson of the enrollment:
    refusals = [
        await beat(api, learner, lesson, position)
        for lesson, position in ((first, 16), (first, 300), (second, 3))
    ]
    for refused in refusals:
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["status_code"] == 429 and "too soon" in refused.json()["detail"]
    # Nothing changed: the rows are as the heartbeat at 15 left them (the enrollment's clock
    # and the lesson's both read that heartbeat's time), and there is none for `second`.
    row = await lesson_row(db, learner, first)
    assert row["position_seconds"] == 15 and row["spans"] == "{[10.000,15.000)}", row
    clock = await watch_clock(db, learner, course["id"])
    accepted_at = await db.fetchval(
        "SELECT last_heartbeat_at FROM lesson_progress WHERE lesson_id = $1", uuid.UUID(first)
    )
    assert clock["last_heartbeat_at"] == accepted_at and clock["watch_clock"] <= accepted_at
    assert await db.fetchval("SELECT count(*) FROM lesson_progress") == 1

    # Half a second after the last one taken, the next is taken, and counts from there.
    await wait_seconds(db, learner, first, 0.5)
    assert (await beat(api, learner, first, 15.5)).status_code == 204
    assert (await lesson_row(db, learner, first))["watched_seconds"] == pytest.approx(5.5, abs=0.2)


async def test_the_limit_is_per_enrollment(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    one, lessons_one = await course_with_lessons(api, db, creator, admin, [60.0])
    two, lessons_two = await course_with_lessons(api, db, creator, admin, [60.0])
    for course in (one, two):
        await enroll(api, learner, course["id"])
    assert (await beat(api, learner, lessons_one[0]["id"], 1)).status_code == 204
    assert (await beat(api, learner, lessons_two[0]["id"], 1)).status_code == 204


async def test_an_honest_player_with_network_jitter_is_never_refused_and_completes(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """A player sends its position every second; the network delivers the heartbeats 0.6 s and
    1.4 s apart by turns. None is refused, and the part of the video a heartbeat arriving early
    could not be credited for is credited by the next one: the whole video counts, and the
    lesson completes."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [20.0, 20.0])
    await enroll(api, learner, course["id"])
    lesson = lessons[0]["id"]
    assert (await beat(api, learner, lesson, 0)).status_code == 204
    for position in range(1, 21):
        await wait_seconds(db, learner, lesson, 0.6 if position % 2 else 1.4)
        response = await beat(api, learner, lesson, position)
        assert response.status_code == 204, (position, response.text)
    row = await lesson_row(db, learner, lesson)
    assert row["completed"] and row["spans"] == "{[0.000,20.000)}", row


async def test_a_player_at_one_heartbeat_a_second_in_real_time(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """No clock moved: a heartbeat a second for three seconds, each taken and credited."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [600.0])
    await enroll(api, learner, course["id"])
    lesson = lessons[0]["id"]
    started = time.monotonic()
    assert (await beat(api, learner, lesson, 0)).status_code == 204
    # The last one a little late (a stall), so that however long the first took to arrive,
    # three seconds have passed by the last.
    for position, at in ((1, 1.0), (2, 2.0), (3, 3.5)):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        assert (await beat(api, learner, lesson, position)).status_code == 204
    assert (await lesson_row(db, learner, lesson))["watched_seconds"] == 3


# --- concurrency ------------------------------------------------------------------------------


async def test_parallel_heartbeats_on_two_lessons_credit_no_more_than_the_time_that_passed(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """Two tabs of one enrollment, their heartbeats in flight together, round after round: the
    enrollment's row lock queues them, the first of each round takes the time that passed and
    the other is refused or counts as a seek. Watched seconds only grow, and in total never
    exceed the time that passed."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [600.0, 600.0])
    await enroll(api, learner, course["id"])
    first, second = lessons[0]["id"], lessons[1]["id"]
    started = time.monotonic()
    assert (await beat(api, learner, first, 0)).status_code == 204
    await wait_seconds(db, learner, first, 1)
    assert (await beat(api, learner, second, 0)).status_code == 204
    simulated, highest = 1.0, 0.0
    for round_ in range(1, 11):
        await wait_seconds(db, learner, first, 10)
        simulated += 10
        position = 10.0 * round_
        responses = await asyncio.gather(
            beat(api, learner, first, position), beat(api, learner, second, position)
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses in ([204, 204], [204, 429]), [r.text for r in responses]
        total = await watched_total(db, learner)
        assert highest <= total <= simulated + (time.monotonic() - started), (round_, total)
        highest = total


async def test_a_heartbeat_caught_by_a_deletion_cascading_the_other_way_is_404_not_500(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    """A heartbeat locks the enrollment, then the lesson's row. A deletion cascading through
    them the other way (a course's lessons and their progress, then its enrollments) can hold
    the lesson's row while waiting for the enrollment: PostgreSQL breaks the cycle by failing one
    of the two. The heartbeat, if it is the one, runs again and finds what the deletion left."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [600.0])
    await enroll(api, learner, course["id"])
    lesson = lessons[0]["id"]
    assert (await beat(api, learner, lesson, 1)).status_code == 204
    await wait_seconds(db, learner, lesson, 1)
    async with db.acquire() as conn:
        deletion = conn.transaction()
        await deletion.start()
        await conn.execute("DELETE FROM lesson_progress WHERE lesson_id = $1", uuid.UUID(lesson))
        waiting = asyncio.ensure_future(beat(api, learner, lesson, 2))

        async def heartbeat_waits() -> bool:
            return bool(
                await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND cardinality(pg_blocking_pids(pid)) > 0"
                )
            )

        await eventually(heartbeat_waits, within=10, what="the heartbeat waiting for its row")
        try:
            await conn.execute("DELETE FROM courses WHERE id = $1", uuid.UUID(course["id"]))
        except asyncpg.DeadlockDetectedError:
            await deletion.rollback()  # the deletion was the one failed: the heartbeat goes on
            assert (await waiting).status_code == 204
            return
        await deletion.commit()
    response = await waiting
    assert response.status_code == 404, response.text
