"""Every response body PostgreSQL builds (the catalog, the course page, authoring and review
answers, the admin review list, GET /progress, the creator dashboard) decodes strictly into the
Struct that documents it: no missing field, no extra field, no field of the wrong type. The
projections are generated from those Structs (lms.db.projection); this is the check from outside."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import msgspec

from lms.api.schemas import Page
from lms.domain.courses.schemas import Course, CourseSummary
from lms.domain.learning.schemas import CreatorDashboard, ProgressEntry
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson
from tests.integration.learning.helpers import complete, course_with_lessons, enroll


def strictly(response: httpx.Response, kind: Any) -> Any:
    assert response.status_code in (200, 201), response.text
    return msgspec.json.decode(response.content, type=kind, strict=True)


async def test_every_sql_built_body_decodes_strictly_into_its_struct(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    published, lessons = await course_with_lessons(
        api, db, creator, admin, [120.0, None], title="Gardening with Python"
    )
    await enroll(api, learner, published["id"])
    await complete(api, learner, lessons[1]["id"])
    draft = await new_course(api, creator, title="A draft")
    await new_lesson(api, creator, draft["id"])
    pending = await new_course(api, creator, title="Pending review")
    await new_lesson(api, creator, pending["id"])
    rejected = await new_course(api, creator, title="To be rejected")
    await new_lesson(api, creator, rejected["id"])
    for course in (pending, rejected):
        assert (
            await api.post(f"/courses/{course['id']}/submit", headers=creator.headers)
        ).status_code == 200

    page = strictly(await api.get("/courses", params={"limit": 1}), Page[CourseSummary])
    assert page.items and page.next_cursor is None
    strictly(await api.get("/courses", params={"q": "gardening"}), Page[CourseSummary])
    strictly(await api.get("/courses", params={"creatorId": str(creator.id)}), Page[CourseSummary])
    strictly(await api.get(f"/courses/{published['id']}"), Course)
    strictly(await api.get(f"/courses/{draft['id']}", headers=creator.headers), Course)
    strictly(
        await api.post("/courses", json={"title": "New", "price": 1}, headers=creator.headers),
        Course,
    )
    strictly(
        await api.patch(f"/courses/{draft['id']}", json={"price": "2.50"}, headers=creator.headers),
        Course,
    )
    strictly(await api.post(f"/courses/{draft['id']}/submit", headers=creator.headers), Course)
    strictly(
        await api.get("/admin/courses", params={"status": "PENDING"}, headers=admin.headers),
        Page[Course],
    )
    strictly(
        await api.post(f"/admin/courses/{pending['id']}/publish", headers=admin.headers), Course
    )
    strictly(
        await api.post(
            f"/admin/courses/{rejected['id']}/reject",
            json={"feedback": "More exercises"},
            headers=admin.headers,
        ),
        Course,
    )
    entries = strictly(await api.get("/progress", headers=learner.headers), list[ProgressEntry])
    assert entries[0].enrollment.progress == 50
    dashboard = strictly(
        await api.get("/creator/dashboard", headers=creator.headers), CreatorDashboard
    )
    assert {c.title for c in dashboard.courses} >= {"Gardening with Python", "A draft"}
