"""The progress heartbeat: resume position, really watched seconds (a seek forward is not
watching, and no more is credited than the time that passed), bounds, concurrency, and completion
by watching. The watch clock's own guarantees (parallel lessons, the rate, honest players) are in
test_watch_time.py."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import TestUser
from tests.integration.learning.helpers import (
    beat,
    course_with_lessons,
    enroll,
    lesson_row,
    wait_seconds,
)


@pytest.fixture
async def video(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> dict[str, str]:
    """A 10-minute video lesson (plus a second lesson, so watching one does not finish the
    course) the learner is enrolled in."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [600.0, 600.0])
    await enroll(api, learner, course["id"])
    return {"course": course["id"], "lesson": lessons[0]["id"], "other": lessons[1]["id"]}


async def play(
    api: httpx.AsyncClient, db: asyncpg.Pool, user: TestUser, lesson: str, positions: list[float]
) -> None:
    """Heartbeats at `positions`, each `step` of wall-clock time after the previous one, where
    step is the distance played (real-time playback, the clock moved instead of slept); the
    first a second after whatever came before (a player sends one a second at most)."""
    previous = positions[0]
    await wait_seconds(db, user, lesson, 1)
    assert (await beat(api, user, lesson, previous)).status_code == 204
    for position in positions[1:]:
        await wait_seconds(db, user, lesson, max(position - previous, 1))
        response = await beat(api, user, lesson, position)
        assert response.status_code == 204, response.text
        previous = position


async def test_heartbeat_saves_the_resume_position(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    response = await beat(api, learner, video["lesson"], 42.5)
    assert response.status_code == 204 and response.content == b""
    row = await lesson_row(db, learner, video["lesson"])
    assert row["position_seconds"] == 42.5 and row["watched_seconds"] == 0  # the clock starts
    state = await api.get(f"/courses/{video['course']}/progress", headers=learner.headers)
    first = state.json()["lessons"][0]
    assert first["positionSeconds"] == 42.5 and first["watchedSeconds"] == 0


async def test_playback_counts_watched_seconds(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    await play(api, db, learner, video["lesson"], [0, 5, 10, 15, 20, 25, 30])
    row = await lesson_row(db, learner, video["lesson"])
    assert row["watched_seconds"] == 30 and row["position_seconds"] == 30


async def test_a_seek_forward_is_saved_for_resume_but_not_counted(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    await play(api, db, learner, video["lesson"], [0, 5, 10])
    # 5 s of wall clock, 290 s of video: a seek.
    await wait_seconds(db, learner, video["lesson"], 5)
    assert (await beat(api, learner, video["lesson"], 300)).status_code == 204
    row = await lesson_row(db, learner, video["lesson"])
    assert row["position_seconds"] == 300 and row["watched_seconds"] == 10
    # Playback from the new position counts again.
    await play(api, db, learner, video["lesson"], [300, 305, 310])
    row = await lesson_row(db, learner, video["lesson"])
    assert row["watched_seconds"] == 20
    assert row["spans"] == "{[0.000,10.000),[300.000,310.000)}"


async def test_a_jump_within_the_time_elapsed_plus_slack_is_playback_credited_at_real_time(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    lesson = video["lesson"]
    await beat(api, learner, lesson, 100)
    await wait_seconds(db, learner, lesson, 5)
    # 1.5 s ahead of the clock: jitter, still playback, but only the 5 s that passed count (the
    # slack decides what is playback; it adds no watched second).
    assert (await beat(api, learner, lesson, 106.5)).status_code == 204
    row = await lesson_row(db, learner, lesson)
    assert row["position_seconds"] == 106.5
    assert 5 <= row["watched_seconds"] < 5.5, row  # what really passed, to the millisecond
    watched = row["watched_seconds"]
    await wait_seconds(db, learner, lesson, 5)
    await beat(api, learner, lesson, 114)  # 7.5 s in 5 s: beyond the slack, a seek
    assert (await lesson_row(db, learner, lesson))["watched_seconds"] == watched


async def test_going_backwards_is_fine_and_rewatching_counts_once(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    lesson = video["lesson"]
    await play(api, db, learner, lesson, [0, 5, 10, 15, 20])
    await wait_seconds(db, learner, lesson, 5)
    assert (await beat(api, learner, lesson, 5)).status_code == 204  # back to 5
    row = await lesson_row(db, learner, lesson)
    assert row["position_seconds"] == 5 and row["watched_seconds"] == 20
    await play(api, db, learner, lesson, [5, 10, 15, 20, 25])  # 5..20 again, then 5 s new
    row = await lesson_row(db, learner, lesson)
    assert row["watched_seconds"] == 25 and row["spans"] == "{[0.000,25.000)}"


async def test_real_time_playback_without_moving_the_clock(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    lesson = video["lesson"]
    assert (await beat(api, learner, lesson, 0)).status_code == 204
    await asyncio.sleep(1.2)
    assert (await beat(api, learner, lesson, 1.0)).status_code == 204
    await asyncio.sleep(1.2)
    assert (await beat(api, learner, lesson, 2.0)).status_code == 204
    await asyncio.sleep(0.6)
    assert (await beat(api, learner, lesson, 60.0)).status_code == 204  # 58 s in 0.6 s: a seek
    row = await lesson_row(db, learner, lesson)
    assert row["watched_seconds"] == 2.0 and row["position_seconds"] == 60.0


@pytest.mark.parametrize("position", [-0.001, -5, 600.001, 601, 1e9])
async def test_positions_outside_the_video_are_400_and_change_nothing(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    video: dict[str, str],
    position: float,
) -> None:
    await beat(api, learner, video["lesson"], 30)
    response = await beat(api, learner, video["lesson"], position)
    assert response.status_code == 400, response.text
    assert response.json()["status_code"] == 400 and response.json()["detail"]
    row = await lesson_row(db, learner, video["lesson"])
    assert row["position_seconds"] == 30


async def test_the_end_of_the_video_is_a_valid_position(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    assert (await beat(api, learner, video["lesson"], 600)).status_code == 204


@pytest.mark.parametrize(
    "body",
    [{}, {"positionSeconds": "ten"}, {"positionSeconds": None}, {"position": 3}, [], "x"],
)
async def test_malformed_heartbeats_are_400(
    api: httpx.AsyncClient, learner: TestUser, video: dict[str, str], body: object
) -> None:
    response = await api.post(
        f"/lessons/{video['lesson']}/progress", json=body, headers=learner.headers
    )
    assert response.status_code == 400, response.text


async def test_heartbeats_need_an_enrollment(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    video: dict[str, str],
    creator: TestUser,
    admin: TestUser,
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    stranger = await make_user("LEARNER")
    for user in (stranger, creator, admin):  # the owner and admins are not enrolled either
        response = await beat(api, user, video["lesson"], 10)
        assert response.status_code == 404, (user.role, response.text)
    assert (await beat(api, stranger, str(uuid.uuid4()), 10)).status_code == 404
    no_token = await api.post(f"/lessons/{video['lesson']}/progress", json={"positionSeconds": 1})
    assert no_token.status_code == 401
    assert await db.fetchval("SELECT count(*) FROM lesson_progress") == 0


async def test_parallel_heartbeats_never_lose_watched_seconds(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    """Players (a phone and a laptop) on one lesson, their heartbeats in flight together: they
    queue on the enrollment's row lock, the first is taken and the ones less than half a second
    behind it are refused (429, changing nothing); each update is applied to the rows as they
    are when it runs, so watched seconds only grow and no span is lost to a concurrent write."""
    lesson = video["lesson"]
    await play(api, db, learner, lesson, [0, 5, 10, 15, 20])
    highest = (await lesson_row(db, learner, lesson))["watched_seconds"]
    for round_ in range(10):
        await wait_seconds(db, learner, lesson, 60)  # time enough for any of these to be play
        positions = [20 + round_ * 30 + step for step in range(0, 30, 3)]
        responses = await asyncio.gather(*(beat(api, learner, lesson, p) for p in positions))
        statuses = [r.status_code for r in responses]
        assert 204 in statuses and set(statuses) <= {204, 429}, statuses
        watched = (await lesson_row(db, learner, lesson))["watched_seconds"]
        assert watched >= highest, (round_, watched, highest)
        highest = watched
    assert highest <= 600


async def test_watching_to_the_threshold_completes_the_lesson(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, video: dict[str, str]
) -> None:
    lesson = video["lesson"]
    # The default threshold is 95%: 570 of 600 s.
    await play(api, db, learner, lesson, [float(p) for p in range(0, 565, 5)])
    assert not (await lesson_row(db, learner, lesson))["completed"]
    await play(api, db, learner, lesson, [560.0, 565.0, 570.0])
    row = await lesson_row(db, learner, lesson)
    assert row["completed"] and row["watched_seconds"] == 570
    state = (await api.get(f"/courses/{video['course']}/progress", headers=learner.headers)).json()
    assert state["progress"] == 50 and not state["completed"]
    assert state["lessons"][0]["completed"] and state["lessons"][0]["completedAt"]


async def test_a_heartbeat_that_completes_the_course_issues_the_certificate(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [20.0])
    await enroll(api, learner, course["id"])
    await play(api, db, learner, lessons[0]["id"], [0, 5, 10, 15, 19])  # 19 of 20 s = 95%
    certificates = (await api.get("/certificates", headers=learner.headers)).json()
    assert len(certificates) == 1 and certificates[0]["course"]["id"] == course["id"]
    state = (await api.get(f"/courses/{course['id']}/progress", headers=learner.headers)).json()
    assert state["completed"] and state["progress"] == 100
    assert state["certificateId"] == certificates[0]["id"]
    # More heartbeats keep the resume position and issue nothing more.
    await play(api, db, learner, lessons[0]["id"], [19, 20])
    assert await db.fetchval("SELECT count(*) FROM certificates") == 1


async def test_the_threshold_follows_the_admin_setting(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    admin: TestUser,
    video: dict[str, str],
) -> None:
    changed = await api.patch(
        "/admin/settings", json={"completionThresholdPercent": 10}, headers=admin.headers
    )
    assert changed.status_code == 200
    await play(api, db, learner, video["lesson"], [0, 20, 40, 59])
    assert not (await lesson_row(db, learner, video["lesson"]))["completed"]
    await play(api, db, learner, video["lesson"], [59, 60])
    assert (await lesson_row(db, learner, video["lesson"]))["completed"]


async def test_a_lesson_of_unknown_length_is_not_completed_by_watching(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [None])
    await enroll(api, learner, course["id"])
    await play(api, db, learner, lessons[0]["id"], [0, 5, 10, 5000])
    row = await lesson_row(db, learner, lessons[0]["id"])
    assert not row["completed"] and row["position_seconds"] == 5000
