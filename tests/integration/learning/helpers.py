"""Learning test steps: published courses whose lessons have videos of a known length, enrolling,
heartbeats, and moving a learner's heartbeat clock back instead of sleeping."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx

from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson


async def course_with_lessons(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    owner: TestUser,
    admin: TestUser,
    durations: Sequence[float | None],
    **fields: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A PUBLISHED course with one lesson per entry of `durations`: a video lesson of that
    length (as the upload probe or the transcription would have measured it), or a lesson
    without a video for None."""
    course = await new_course(api, owner, **fields)
    lessons = []
    for i, duration in enumerate(durations):
        extra = {} if duration is None else {"videoUrl": f"https://videos.example.test/{i}.mp4"}
        lesson = await new_lesson(api, owner, course["id"], title=f"Lesson {i + 1}", **extra)
        if duration is not None:
            await db.execute(
                "UPDATE lessons SET duration_seconds = $2 WHERE id = $1",
                uuid.UUID(lesson["id"]),
                duration,
            )
        lessons.append(lesson)
    submitted = await api.post(f"/courses/{course['id']}/submit", headers=owner.headers)
    assert submitted.status_code == 200, submitted.text
    published = await api.post(f"/admin/courses/{course['id']}/publish", headers=admin.headers)
    assert published.status_code == 200, published.text
    return dict(published.json()), lessons


async def enroll(api: httpx.AsyncClient, user: TestUser, course_id: str) -> dict[str, Any]:
    response = await api.post(f"/courses/{course_id}/enroll", headers=user.headers)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def beat(
    api: httpx.AsyncClient, user: TestUser, lesson_id: str, position: float
) -> httpx.Response:
    return await api.post(
        f"/lessons/{lesson_id}/progress", json={"positionSeconds": position}, headers=user.headers
    )


async def wait_seconds(db: asyncpg.Pool, user: TestUser, lesson_id: str, seconds: float) -> None:
    """As if `seconds` of wall-clock time passed since the user's previous heartbeat: every clock
    of the enrollment the lesson belongs to (its watch clock, shared by all its lessons, and the
    lessons' own heartbeat times) moves back by that much, as the stored past would look."""
    async with db.acquire() as conn, conn.transaction():
        enrollment = await conn.fetchval(
            """UPDATE enrollments e
               SET last_heartbeat_at = e.last_heartbeat_at - make_interval(secs => $3),
                   watch_clock = e.watch_clock - make_interval(secs => $3)
               FROM lessons l
               WHERE l.id = $2 AND e.course_id = l.course_id AND e.user_id = $1
               RETURNING e.id""",
            user.id,
            uuid.UUID(lesson_id),
            seconds,
        )
        await conn.execute(
            """UPDATE lesson_progress
               SET last_heartbeat_at = last_heartbeat_at - make_interval(secs => $2)
               WHERE enrollment_id = $1""",
            enrollment,
            seconds,
        )


async def watch_clock(db: asyncpg.Pool, user: TestUser, course_id: str) -> asyncpg.Record:
    """The enrollment's clock columns (lms_0011_watch_clock), to see that a refusal moved
    nothing."""
    row = await db.fetchrow(
        "SELECT last_heartbeat_at, watch_clock FROM enrollments WHERE user_id = $1"
        " AND course_id = $2",
        user.id,
        uuid.UUID(course_id),
    )
    assert row is not None
    return row


async def lesson_row(db: asyncpg.Pool, user: TestUser, lesson_id: str) -> asyncpg.Record:
    row = await db.fetchrow(
        """SELECT position_seconds, watched_seconds, watched::text AS spans, completed
           FROM lesson_progress WHERE user_id = $1 AND lesson_id = $2""",
        user.id,
        uuid.UUID(lesson_id),
    )
    assert row is not None
    return row


async def complete(api: httpx.AsyncClient, user: TestUser, lesson_id: str) -> httpx.Response:
    return await api.post(f"/lessons/{lesson_id}/complete", headers=user.headers)
