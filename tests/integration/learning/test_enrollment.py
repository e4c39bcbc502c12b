"""Enrolling: once per learner and course whatever the races, only in published courses, the
video opening up to the enrolled, and reading one's progress."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import msgspec

from lms.domain.learning.schemas import CourseProgress, Enrollment, ProgressEntry
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson
from tests.integration.learning.helpers import complete, course_with_lessons, enroll


async def test_enroll_is_201_then_200_with_the_same_enrollment(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    first = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert first.status_code == 201, first.text
    body = msgspec.json.decode(first.content, type=Enrollment, strict=True)
    assert body.course_id == uuid.UUID(course["id"]) and body.user_id == learner.id
    assert body.progress == 0 and body.completed is False and body.completed_at is None

    again = await api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
    assert again.status_code == 200
    assert again.json() == first.json()


async def test_only_published_courses_take_enrollments(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    draft = await new_course(api, creator)
    await new_lesson(api, creator, draft["id"])
    pending = await new_course(api, creator)
    await new_lesson(api, creator, pending["id"])
    assert (
        await api.post(f"/courses/{pending['id']}/submit", headers=creator.headers)
    ).status_code == 200
    for course_id in (draft["id"], pending["id"], str(uuid.uuid4())):
        for user in (learner, creator, admin):  # the owner and admins too: not published, 404
            response = await api.post(f"/courses/{course_id}/enroll", headers=user.headers)
            assert response.status_code == 404, (course_id, user.role, response.text)
    assert await db.fetchval("SELECT count(*) FROM enrollments") == 0


async def test_enrolling_needs_an_account(
    api: httpx.AsyncClient, db: asyncpg.Pool, creator: TestUser, admin: TestUser
) -> None:
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    assert (await api.post(f"/courses/{course['id']}/enroll")).status_code == 401


async def test_racing_enrolls_make_one_enrollment(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    for _ in range(5):
        await db.execute("DELETE FROM enrollments")
        responses = await asyncio.gather(
            *(
                api.post(f"/courses/{course['id']}/enroll", headers=learner.headers)
                for _ in range(12)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 11 + [201], statuses
        assert len({r.json()["id"] for r in responses}) == 1
        assert await db.fetchval("SELECT count(*) FROM enrollments") == 1


async def test_the_video_opens_up_to_the_enrolled_learner(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [60.0])
    lesson_path = f"/lessons/{lessons[0]['id']}"
    before = await api.get(lesson_path, headers=learner.headers)
    assert before.status_code == 200 and before.json()["videoUrl"] is None
    transcript = await api.get(f"{lesson_path}/transcript", headers=learner.headers)
    assert transcript.status_code == 403

    await enroll(api, learner, course["id"])
    after = await api.get(lesson_path, headers=learner.headers)
    assert after.json()["videoUrl"] == "https://videos.example.test/0.mp4"
    listed = await api.get(f"/courses/{course['id']}/lessons", headers=learner.headers)
    assert listed.json()[0]["videoUrl"] == "https://videos.example.test/0.mp4"
    assert (await api.get(f"{lesson_path}/transcript", headers=learner.headers)).status_code == 200
    # Still nothing for anonymous visitors.
    assert (await api.get(lesson_path)).json()["videoUrl"] is None


async def test_progress_lists_the_callers_enrollments_with_course_and_certificate(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    done, done_lessons = await course_with_lessons(api, db, creator, admin, [None], title="Done")
    started, _ = await course_with_lessons(api, db, creator, admin, [None, None], title="Started")
    await enroll(api, learner, done["id"])
    completion = await complete(api, learner, done_lessons[0]["id"])
    await enroll(api, learner, started["id"])
    other = await make_user("LEARNER")
    await enroll(api, other, started["id"])

    response = await api.get("/progress", headers=learner.headers)
    assert response.status_code == 200
    entries = msgspec.json.decode(response.content, type=list[ProgressEntry], strict=True)
    assert [e.course.title for e in entries] == ["Started", "Done"]  # newest first
    newest, oldest = entries
    assert newest.certificate_id is None and newest.enrollment.progress == 0
    assert oldest.enrollment.completed and oldest.enrollment.progress == 100
    assert str(oldest.certificate_id) == completion.json()["certificate"]["id"]
    assert oldest.course.creator.id == creator.id and oldest.course.lesson_count == 1
    assert all(e.enrollment.user_id == learner.id for e in entries)

    nothing = await api.get("/progress", headers=creator.headers)
    assert nothing.status_code == 200 and nothing.json() == []
    assert (await api.get("/progress")).status_code == 401


async def test_course_progress_is_per_lesson_and_only_for_the_enrolled(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [120.0, None, 30.0])
    path = f"/courses/{course['id']}/progress"
    assert (await api.get(path, headers=learner.headers)).status_code == 404
    assert (await api.get(path, headers=creator.headers)).status_code == 404  # owner, not enrolled
    assert (
        await api.get(f"/courses/{uuid.uuid4()}/progress", headers=learner.headers)
    ).status_code == 404

    enrollment = await enroll(api, learner, course["id"])
    await complete(api, learner, lessons[1]["id"])
    response = await api.get(path, headers=learner.headers)
    assert response.status_code == 200
    state = msgspec.json.decode(response.content, type=CourseProgress, strict=True)
    assert str(state.enrollment_id) == enrollment["id"]
    assert state.progress == 33.33 and not state.completed and state.certificate_id is None
    assert [lesson.order for lesson in state.lessons] == [1, 2, 3]
    assert [lesson.completed for lesson in state.lessons] == [False, True, False]
    assert state.lessons[0].duration_seconds == 120.0 and state.lessons[0].position_seconds == 0
    assert state.lessons[1].completed_at is not None
