"""The creator dashboard: the caller's own courses, with enrollments, completions, average
progress, and per lesson how many started, finished and watched how long."""

from __future__ import annotations

import asyncpg
import httpx
import msgspec

from lms.domain.learning.schemas import CreatorDashboard
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson
from tests.integration.learning.helpers import (
    beat,
    complete,
    course_with_lessons,
    enroll,
    wait_seconds,
)


async def test_the_dashboard_adds_up_the_creators_courses(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    creator: TestUser,
    admin: TestUser,
    make_user,  # type: ignore[no-untyped-def]
) -> None:
    course, lessons = await course_with_lessons(
        api, db, creator, admin, [300.0, 300.0, None], title="Published"
    )
    draft = await new_course(api, creator, title="Still a draft")
    await new_lesson(api, creator, draft["id"], title="Only lesson")
    other_creator = await make_user("CREATOR")
    elsewhere, other_lessons = await course_with_lessons(api, db, other_creator, admin, [None])

    finisher, halfway, idle = [await make_user("LEARNER") for _ in range(3)]
    for learner in (finisher, halfway, idle):
        await enroll(api, learner, course["id"])
    await enroll(api, finisher, elsewhere["id"])
    for lesson in lessons:
        await complete(api, finisher, lesson["id"])
    await complete(api, halfway, lessons[0]["id"])
    # halfway watches 60 s of the second lesson.
    await beat(api, halfway, lessons[1]["id"], 0)
    for position in (20, 40, 60):
        await wait_seconds(db, halfway, lessons[1]["id"], 20)
        await beat(api, halfway, lessons[1]["id"], position)
    await complete(api, finisher, other_lessons[0]["id"])

    response = await api.get("/creator/dashboard", headers=creator.headers)
    assert response.status_code == 200, response.text
    dashboard = msgspec.json.decode(response.content, type=CreatorDashboard, strict=True)
    assert [c.title for c in dashboard.courses] == ["Still a draft", "Published"]  # newest first
    pending, published = dashboard.courses
    assert pending.status == "DRAFT" and pending.enrollment_count == 0
    assert pending.average_progress == 0 and [les.started_count for les in pending.lessons] == [0]

    assert published.status == "PUBLISHED" and published.lesson_count == 3
    assert published.enrollment_count == 3 and published.completion_count == 1
    assert published.average_progress == round((100 + 33.33 + 0) / 3, 2)
    first, second, third = published.lessons
    assert [les.order for les in published.lessons] == [1, 2, 3]
    assert (first.started_count, first.completed_count) == (2, 2)
    assert (second.started_count, second.completed_count) == (2, 1)
    assert second.average_watched_seconds == 30.0  # 60 s and 0 s (completed without watching)
    assert (third.started_count, third.completed_count) == (1, 1)

    totals = dashboard.totals
    assert (totals.course_count, totals.lesson_count) == (2, 4)
    assert (totals.enrollment_count, totals.completion_count) == (3, 1)
    assert totals.learner_count == 3 and totals.average_progress == 44.44


async def test_a_creator_without_courses_sees_zeros_and_learners_are_refused(
    api: httpx.AsyncClient, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    for user in (creator, admin):  # an admin sees their own courses: none
        body = (await api.get("/creator/dashboard", headers=user.headers)).json()
        assert body["courses"] == []
        assert body["totals"] == {
            "courseCount": 0,
            "lessonCount": 0,
            "enrollmentCount": 0,
            "completionCount": 0,
            "learnerCount": 0,
            "averageProgress": 0,
        }
    assert (await api.get("/creator/dashboard", headers=learner.headers)).status_code == 403
    assert (await api.get("/creator/dashboard")).status_code == 401
