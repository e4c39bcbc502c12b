"""Course authoring and review: the DRAFT -> PENDING -> PUBLISHED lifecycle, owners and admins."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson, published_course


async def test_a_creator_creates_a_draft(api: httpx.AsyncClient, creator: TestUser) -> None:
    course = await new_course(
        api, creator, price=49.9, thumbnailUrl="https://img.example.test/c.png"
    )
    assert course["status"] == "DRAFT" and course["price"] == "49.90"
    assert course["creator"]["id"] == str(creator.id) and course["lessons"] == []
    assert (
        course["lessonCount"] == 0
        and course["publishedAt"] is None
        and course["submittedAt"] is None
    )
    assert course["createdAt"].endswith("Z")
    assert (await api.get(f"/courses/{course['id']}", headers=creator.headers)).json() == course


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x", "price": "-1"},
        {"title": "x", "price": "1.234"},
        {"title": "x", "price": "abc"},
        {"title": "x", "price": "NaN"},
        {"title": "x", "price": 1e12},
        {"title": "x", "price": True},
        {"title": "   ", "price": "1"},
        {"title": "x", "price": "1", "thumbnailUrl": "ftp://x"},
        {"title": "x", "price": "1", "bogus": 1},
        {"price": "1"},
    ],
)
async def test_bad_course_input_is_refused(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool, body: dict[str, object]
) -> None:
    response = await api.post("/courses", json=body, headers=creator.headers)
    assert response.status_code == 400, response.text
    assert await db.fetchval("SELECT count(*) FROM courses") == 0


async def test_drafts_are_private_to_their_owner_and_admins(
    api: httpx.AsyncClient, creator: TestUser, make_user, admin: TestUser, learner: TestUser
) -> None:  # type: ignore[no-untyped-def]
    course = await new_course(api, creator)
    other = await make_user("CREATOR")
    url = f"/courses/{course['id']}"
    assert (await api.get(url)).status_code == 404
    assert (await api.get(url, headers=learner.headers)).status_code == 404
    assert (await api.get(url, headers=other.headers)).status_code == 404
    assert (
        await api.patch(url, json={"title": "mine now"}, headers=other.headers)
    ).status_code == 404
    assert (await api.delete(url, headers=other.headers)).status_code == 404
    assert (await api.get(url, headers=admin.headers)).status_code == 200
    assert (await api.get(f"{url}/lessons", headers=other.headers)).status_code == 404


async def test_edit_only_as_draft(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser
) -> None:
    course = await new_course(api, creator)
    url = f"/courses/{course['id']}"
    edited = await api.patch(
        url, json={"title": "Compilers, again", "price": 10}, headers=creator.headers
    )
    assert edited.status_code == 200 and edited.json()["title"] == "Compilers, again"
    assert edited.json()["price"] == "10.00"
    assert (await api.patch(url, json={}, headers=creator.headers)).status_code == 400
    by_admin = await api.patch(
        url, json={"description": "Edited by an admin"}, headers=admin.headers
    )
    assert by_admin.status_code == 200
    await new_lesson(api, creator, course["id"])
    assert (await api.post(f"{url}/submit", headers=creator.headers)).status_code == 200
    assert (
        await api.patch(url, json={"title": "late"}, headers=creator.headers)
    ).status_code == 409


async def test_submit_needs_a_lesson_and_a_draft_and_the_owner(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser
) -> None:
    course = await new_course(api, creator)
    submit = f"/courses/{course['id']}/submit"
    assert (await api.post(submit, headers=creator.headers)).status_code == 409
    await new_lesson(api, creator, course["id"])
    assert (
        await api.post(submit, headers=admin.headers)
    ).status_code == 403  # admin is not the owner
    done = await api.post(submit, headers=creator.headers)
    assert done.status_code == 200
    assert done.json()["status"] == "PENDING" and done.json()["submittedAt"] is not None
    assert (await api.post(submit, headers=creator.headers)).status_code == 409


async def test_publish_and_reject_are_admin_review_steps(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser, db: asyncpg.Pool
) -> None:
    course = await new_course(api, creator)
    await new_lesson(api, creator, course["id"])
    cid = course["id"]
    assert (
        await api.post(f"/admin/courses/{cid}/publish", headers=admin.headers)
    ).status_code == 409  # DRAFT
    await api.post(f"/courses/{cid}/submit", headers=creator.headers)
    queue = await api.get("/admin/courses", headers=admin.headers)
    assert [c["id"] for c in queue.json()["items"]] == [cid]
    assert queue.json()["items"][0]["lessons"][0]["title"] == "Lesson"

    rejected = await api.post(
        f"/admin/courses/{cid}/reject", json={"feedback": "Add exercises"}, headers=admin.headers
    )
    assert rejected.status_code == 200
    assert (
        rejected.json()["status"] == "DRAFT" and rejected.json()["reviewNotes"] == "Add exercises"
    )
    assert (
        await api.post(
            f"/admin/courses/{cid}/reject", json={"feedback": " "}, headers=admin.headers
        )
    ).status_code == 400

    await api.post(f"/courses/{cid}/submit", headers=creator.headers)
    published = await api.post(f"/admin/courses/{cid}/publish", headers=admin.headers)
    assert published.status_code == 200
    body = published.json()
    assert (
        body["status"] == "PUBLISHED"
        and body["publishedAt"] is not None
        and body["reviewNotes"] is None
    )
    assert (
        await api.post(f"/admin/courses/{cid}/publish", headers=admin.headers)
    ).status_code == 409
    assert (await api.get(f"/courses/{cid}")).status_code == 200  # public now
    actions = [
        r["action"] for r in await db.fetch("SELECT action FROM audit_log ORDER BY created_at")
    ]
    assert actions == ["course.reject", "course.publish"]
    assert (
        await api.post(f"/admin/courses/{cid}/publish", headers=creator.headers)
    ).status_code == 403


async def test_concurrent_reviews_let_exactly_one_through(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser
) -> None:
    course = await new_course(api, creator)
    await new_lesson(api, creator, course["id"])
    await api.post(f"/courses/{course['id']}/submit", headers=creator.headers)
    calls = [
        api.post(f"/admin/courses/{course['id']}/publish", headers=admin.headers) for _ in range(3)
    ]
    calls += [
        api.post(
            f"/admin/courses/{course['id']}/reject", json={"feedback": "no"}, headers=admin.headers
        )
        for _ in range(3)
    ]
    statuses = sorted(r.status_code for r in await asyncio.gather(*calls))
    assert statuses == [200, 409, 409, 409, 409, 409]


async def test_delete_rules(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser, db: asyncpg.Pool
) -> None:
    draft = await new_course(api, creator)
    await new_lesson(api, creator, draft["id"])
    assert (await api.delete(f"/courses/{draft['id']}", headers=creator.headers)).status_code == 204
    assert await db.fetchval("SELECT count(*) FROM lessons") == 0
    live = await published_course(api, creator, admin)
    assert (await api.delete(f"/courses/{live['id']}", headers=creator.headers)).status_code == 409
    assert (await api.delete(f"/courses/{live['id']}", headers=admin.headers)).status_code == 204
    assert (await api.get(f"/courses/{live['id']}")).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'course.delete'") == 1


async def test_admin_course_list_filters_and_pages(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser
) -> None:
    for _ in range(3):
        await new_course(api, creator)
    first = await api.get(
        "/admin/courses", params={"status": "DRAFT", "limit": 2}, headers=admin.headers
    )
    assert first.status_code == 200 and len(first.json()["items"]) == 2
    second = await api.get(
        "/admin/courses",
        params={"status": "DRAFT", "limit": 2, "cursor": first.json()["nextCursor"]},
        headers=admin.headers,
    )
    assert len(second.json()["items"]) == 1 and second.json()["nextCursor"] is None
    ids = {c["id"] for c in first.json()["items"] + second.json()["items"]}
    assert len(ids) == 3
    assert (await api.get("/admin/courses", headers=admin.headers)).json()["items"] == []  # PENDING
    other_scope = await api.get(
        "/admin/courses",
        params={"status": "PUBLISHED", "cursor": first.json()["nextCursor"]},
        headers=admin.headers,
    )
    assert other_scope.status_code == 400
    assert (
        await api.get("/admin/courses", params={"status": "GONE"}, headers=admin.headers)
    ).status_code == 400
