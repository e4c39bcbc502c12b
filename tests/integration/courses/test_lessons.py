"""Lessons: dense 1..n ordering under moves, reorders, deletes and concurrency; DRAFT-only
changes; who sees the video."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx

from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson, published_course


async def titles(api: httpx.AsyncClient, owner: TestUser, course_id: str) -> list[str]:
    lessons = (await api.get(f"/courses/{course_id}/lessons", headers=owner.headers)).json()
    assert [lesson["order"] for lesson in lessons] == list(range(1, len(lessons) + 1))
    return [lesson["title"] for lesson in lessons]


async def test_insert_move_reorder_delete_keep_orders_dense(
    api: httpx.AsyncClient, creator: TestUser
) -> None:
    course = await new_course(api, creator)
    cid = course["id"]
    a = await new_lesson(api, creator, cid, title="A")
    b = await new_lesson(api, creator, cid, title="B")
    c = await new_lesson(api, creator, cid, title="C", order=1)
    assert c["order"] == 1 and await titles(api, creator, cid) == ["C", "A", "B"]
    assert (
        await api.post(
            f"/courses/{cid}/lessons", json={"title": "X", "order": 5}, headers=creator.headers
        )
    ).status_code == 400

    moved = await api.patch(f"/lessons/{c['id']}", json={"order": 3}, headers=creator.headers)
    assert moved.status_code == 200 and moved.json()["order"] == 3
    assert await titles(api, creator, cid) == ["A", "B", "C"]
    await api.patch(
        f"/lessons/{c['id']}", json={"order": 2, "title": "C2"}, headers=creator.headers
    )
    assert await titles(api, creator, cid) == ["A", "C2", "B"]
    assert (
        await api.patch(f"/lessons/{c['id']}", json={"order": 4}, headers=creator.headers)
    ).status_code == 400
    assert (
        await api.patch(f"/lessons/{c['id']}", json={}, headers=creator.headers)
    ).status_code == 400

    order = [b["id"], a["id"], c["id"]]
    reordered = await api.put(
        f"/courses/{cid}/lessons/order", json={"lessonIds": order}, headers=creator.headers
    )
    assert reordered.status_code == 200 and [x["id"] for x in reordered.json()] == order
    for bad in (
        [b["id"], a["id"]],
        [b["id"], a["id"], a["id"]],
        [b["id"], a["id"], str(uuid.uuid4())],
        [],
    ):
        response = await api.put(
            f"/courses/{cid}/lessons/order", json={"lessonIds": bad}, headers=creator.headers
        )
        assert response.status_code == 400, bad
    assert await titles(api, creator, cid) == ["B", "A", "C2"]

    assert (await api.delete(f"/lessons/{b['id']}", headers=creator.headers)).status_code == 204
    assert await titles(api, creator, cid) == ["A", "C2"]
    detail = (await api.get(f"/courses/{cid}", headers=creator.headers)).json()
    assert detail["lessonCount"] == 2 and [x["order"] for x in detail["lessons"]] == [1, 2]


async def test_concurrent_changes_keep_orders_dense(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool
) -> None:
    course = await new_course(api, creator)
    cid = course["id"]
    created = await asyncio.gather(
        *(
            api.post(
                f"/courses/{cid}/lessons",
                json={"title": f"L{i}", "order": 1},
                headers=creator.headers,
            )
            for i in range(10)
        )
    )
    assert all(r.status_code == 201 for r in created)
    ids = [r.json()["id"] for r in created]
    moves = [
        api.patch(f"/lessons/{lid}", json={"order": (i % 10) + 1}, headers=creator.headers)
        for i, lid in enumerate(ids)
    ]
    deletes = [api.delete(f"/lessons/{lid}", headers=creator.headers) for lid in ids[:3]]
    reorder = api.put(
        f"/courses/{cid}/lessons/order",
        json={"lessonIds": list(reversed(ids))},
        headers=creator.headers,
    )
    results = await asyncio.gather(*moves, *deletes, reorder)
    assert all(r.status_code in (200, 204, 400, 404) for r in results), [r.text for r in results]
    positions = [
        r["position"]
        for r in await db.fetch(
            "SELECT position FROM lessons WHERE course_id = $1 ORDER BY position", uuid.UUID(cid)
        )
    ]
    assert positions == list(range(1, 8))
    assert await db.fetchval("SELECT lesson_count FROM courses WHERE id = $1", uuid.UUID(cid)) == 7


async def test_lesson_changes_only_in_a_draft(
    api: httpx.AsyncClient, creator: TestUser, admin: TestUser
) -> None:
    course = await published_course(api, creator, admin, lessons=2)
    cid = course["id"]
    lesson = course["lessons"][0]
    assert (
        await api.post(f"/courses/{cid}/lessons", json={"title": "late"}, headers=creator.headers)
    ).status_code == 409
    assert (
        await api.patch(f"/lessons/{lesson['id']}", json={"title": "late"}, headers=creator.headers)
    ).status_code == 409
    order = [x["id"] for x in reversed(course["lessons"])]
    assert (
        await api.put(
            f"/courses/{cid}/lessons/order", json={"lessonIds": order}, headers=creator.headers
        )
    ).status_code == 409
    assert (
        await api.delete(f"/lessons/{lesson['id']}", headers=creator.headers)
    ).status_code == 409
    assert (await api.delete(f"/lessons/{lesson['id']}", headers=admin.headers)).status_code == 409


async def test_only_the_owner_authors_lessons(
    api: httpx.AsyncClient, creator: TestUser, make_user, admin: TestUser
) -> None:  # type: ignore[no-untyped-def]
    course = await new_course(api, creator)
    lesson = await new_lesson(api, creator, course["id"])
    other = await make_user("CREATOR")
    assert (
        await api.post(
            f"/courses/{course['id']}/lessons", json={"title": "x"}, headers=other.headers
        )
    ).status_code == 404
    assert (
        await api.patch(f"/lessons/{lesson['id']}", json={"title": "x"}, headers=other.headers)
    ).status_code == 404
    # An admin sees the draft but is not its author; deleting is an admin right.
    assert (
        await api.post(
            f"/courses/{course['id']}/lessons", json={"title": "x"}, headers=admin.headers
        )
    ).status_code == 403
    assert (
        await api.patch(f"/lessons/{lesson['id']}", json={"title": "x"}, headers=admin.headers)
    ).status_code == 403
    assert (await api.delete(f"/lessons/{lesson['id']}", headers=admin.headers)).status_code == 204


async def test_the_video_is_for_the_enrolled_the_owner_and_admins(
    api: httpx.AsyncClient,
    creator: TestUser,
    admin: TestUser,
    learner: TestUser,
    make_user,
    db: asyncpg.Pool,
) -> None:  # type: ignore[no-untyped-def]
    course = await new_course(api, creator)
    lesson = await new_lesson(
        api, creator, course["id"], videoUrl="https://videos.example.test/intro.mp4"
    )
    assert (
        lesson["videoUrl"] == "https://videos.example.test/intro.mp4"
        and lesson["transcriptStatus"] == "QUEUED"
    )
    await api.post(f"/courses/{course['id']}/submit", headers=creator.headers)
    await api.post(f"/admin/courses/{course['id']}/publish", headers=admin.headers)

    url = f"/lessons/{lesson['id']}"
    assert (await api.get(url)).json()["videoUrl"] is None
    assert (await api.get(url, headers=learner.headers)).json()["videoUrl"] is None
    assert (await api.get(url, headers=creator.headers)).json()["videoUrl"] is not None
    assert (await api.get(url, headers=admin.headers)).json()["videoUrl"] is not None
    await db.execute(
        "INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2)",
        learner.id,
        uuid.UUID(course["id"]),
    )
    assert (await api.get(url, headers=learner.headers)).json()["videoUrl"] is not None
    listed = (await api.get(f"/courses/{course['id']}/lessons", headers=learner.headers)).json()
    assert listed[0]["videoUrl"] is not None
    stranger = await make_user("LEARNER")
    assert (await api.get(f"/courses/{course['id']}/lessons", headers=stranger.headers)).json()[0][
        "videoUrl"
    ] is None
    assert (await api.get(f"/lessons/{uuid.uuid4()}")).status_code == 404
    assert (await api.get(url, headers={"Authorization": "Bearer junk"})).status_code == 401


async def test_an_external_video_queues_a_transcription_job(
    api: httpx.AsyncClient, creator: TestUser, db: asyncpg.Pool
) -> None:
    course = await new_course(api, creator)
    lesson = await new_lesson(
        api, creator, course["id"], videoUrl="https://videos.example.test/a.mp4"
    )
    job = await db.fetchrow(
        "SELECT status, video_version, published_at FROM transcription_jobs WHERE lesson_id = $1",
        uuid.UUID(lesson["id"]),
    )
    # Committed with the lesson, then handed to NATS JetStream.
    assert (
        job["status"] == "QUEUED" and job["video_version"] == 1 and job["published_at"] is not None
    )
    requeued = await api.post(f"/lessons/{lesson['id']}/transcribe", headers=creator.headers)
    assert requeued.status_code == 202 and requeued.json()["status"] == "QUEUED"
    assert await db.fetchval("SELECT count(*) FROM transcription_jobs") == 1
    plain = await new_lesson(api, creator, course["id"])
    assert (
        await api.post(f"/lessons/{plain['id']}/transcribe", headers=creator.headers)
    ).status_code == 409
