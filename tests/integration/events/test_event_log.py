"""The event log: each domain change writes its event in its own transaction, once, with the
ids an integrator needs and no secrets; a refused change writes none."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from lms.domain.events.dispatcher import EventDispatcher
from lms.domain.events.log import record_event
from lms.housekeeping import sweep_once
from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson
from tests.integration.learning.helpers import complete, course_with_lessons, enroll

UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


async def events_of(db: asyncpg.Pool, type_: str | None = None) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT id, type, data FROM events WHERE $1::text IS NULL OR type = $1 ORDER BY seq",
        type_,
    )
    return [{"id": r["id"], "type": r["type"], **r["data"]} for r in rows]


async def test_the_learning_path_writes_one_event_per_change(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [None, None])
    assert [e["type"] for e in await events_of(db)] == ["course.submitted", "course.published"]
    published = (await events_of(db, "course.published"))[0]
    assert published["courseId"] == course["id"] and published["creatorId"] == str(creator.id)

    enrollment = await enroll(api, learner, course["id"])
    await enroll(api, learner, course["id"])  # again: not a new enrollment, no event
    created = await events_of(db, "enrollment.created")
    assert len(created) == 1
    assert created[0]["enrollmentId"] == enrollment["id"]
    assert created[0]["userId"] == str(learner.id) and created[0]["courseId"] == course["id"]
    assert created[0]["source"] == "self"

    for lesson in lessons:
        assert (await complete(api, learner, lesson["id"])).status_code == 200
    again = await complete(api, learner, lessons[0]["id"])  # idempotent: no second event
    assert again.status_code == 200
    completed = await events_of(db, "lesson.completed")
    assert [e["lessonId"] for e in completed] == [lesson["id"] for lesson in lessons]
    assert [e["progress"] for e in completed] == [50.0, 100.0]
    assert len(await events_of(db, "course.completed")) == 1
    issued = await events_of(db, "certificate.issued")
    assert len(issued) == 1
    certificate = again.json()["certificate"]
    assert issued[0]["certificateId"] == certificate["id"]
    assert issued[0]["verifyUrl"] == certificate["verifyUrl"]

    revoked = await api.post(
        f"/admin/certificates/{certificate['id']}/revoke",
        json={"reason": "plagiarism"},
        headers=admin.headers,
    )
    assert revoked.status_code == 200, revoked.text
    (event,) = await events_of(db, "certificate.revoked")
    assert event["certificateId"] == certificate["id"] and event["reason"] == "plagiarism"
    # Nothing about the account's secrets, nor an email, in any of them.
    text = str(await events_of(db))
    assert learner.email not in text and "password" not in text.lower()
    assert len({e["id"] for e in await events_of(db)}) == len(await events_of(db))
    # Every time in every event's data reads alike (UTC, "Z"), whether SQL or Python wrote it.
    times = [v for e in await events_of(db) for k, v in e.items() if k.endswith("At")]
    assert {"enrolledAt", "issuedAt", "revokedAt"} <= {
        k for e in await events_of(db) for k in e if k.endswith("At")
    }
    assert all(UTC_TIME.fullmatch(t) for t in times), times


async def test_a_rejected_course_and_bulk_enrollment_write_their_events(
    api: httpx.AsyncClient, db: asyncpg.Pool, learner: TestUser, creator: TestUser, admin: TestUser
) -> None:
    course, _ = await course_with_lessons(api, db, creator, admin, [None])
    response = await api.post(
        f"/admin/courses/{course['id']}/enrollments",
        json={"emails": [learner.email, learner.email, "nobody@example.test"]},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    (created,) = await events_of(db, "enrollment.created")
    assert created["userId"] == str(learner.id) and created["source"] == "admin"

    draft = await new_course(api, creator)
    await new_lesson(api, creator, draft["id"], title="Only")
    assert (await api.post(f"/courses/{draft['id']}/submit", headers=creator.headers)).is_success
    rejected = await api.post(
        f"/admin/courses/{draft['id']}/reject",
        json={"feedback": "too short"},
        headers=admin.headers,
    )
    assert rejected.status_code == 200, rejected.text
    (event,) = await events_of(db, "course.rejected")
    assert event["courseId"] == draft["id"] and event["feedback"] == "too short"
    # A refused review (the course is a DRAFT again) writes nothing.
    again = await api.post(f"/admin/courses/{draft['id']}/publish", headers=admin.headers)
    assert again.status_code == 409
    assert len(await events_of(db, "course.published")) == 1


async def test_an_event_rolls_back_with_its_change(db: asyncpg.Pool) -> None:
    async def change_that_fails() -> None:
        async with db.acquire() as conn, conn.transaction():
            await record_event(conn, "course.published", {"courseId": uuid.uuid4()})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await change_that_fails()
    assert await events_of(db) == []
    with pytest.raises(ValueError, match="unknown event type"):
        await record_event(db, "course.exploded", {})


async def test_housekeeping_forgets_what_every_sink_is_done_with(db: asyncpg.Pool) -> None:
    old = await record_event(db, "course.published", {"courseId": uuid.uuid4()})
    waiting = await record_event(db, "course.published", {"courseId": uuid.uuid4()})
    fresh = await record_event(db, "course.published", {"courseId": uuid.uuid4()})
    # The dispatcher (no sinks here) reads past the three; the fourth comes after.
    while await EventDispatcher(db, []).dispatch_once():
        pass
    unread = await record_event(db, "course.published", {"courseId": uuid.uuid4()})
    await db.execute(
        "UPDATE events SET occurred_at = now() - interval '40 days' WHERE id = ANY($1::uuid[])",
        [old, waiting, unread],
    )
    endpoint = await db.fetchval(
        "INSERT INTO webhook_endpoints (url, events, secret)"
        " VALUES ('https://example.com/', '{course.published}', 'whsec_x') RETURNING id"
    )
    await db.execute(
        "INSERT INTO webhook_queue (endpoint_id, event_id, event_seq, delivery_id, type)"
        " SELECT $1, id, seq, gen_random_uuid(), type FROM events WHERE id = $2",
        endpoint,
        waiting,
    )
    await sweep_once(db)
    left = {r["id"] for r in await db.fetch("SELECT id FROM events")}
    # A queued delivery keeps its event, and so does a reader that has not passed it.
    assert left == {waiting, fresh, unread}


async def test_a_webhook_endpoint_behind_keeps_the_log_unless_disabled_for_longer(
    db: asyncpg.Pool,
) -> None:
    """Each endpoint reads the log from its own place: one that has not passed an event keeps it
    past the age (it is still to receive it), unless it has been disabled for longer than the
    age (what it missed is older than the log keeps)."""
    from lms.db.queries import webhooks as webhook_sql

    endpoints = [
        await webhook_sql.insert_endpoint(
            db,
            url=f"https://example.com/{i}",
            events=["course.published"],
            description="",
            secret="whsec_x",
        )
        for i in range(2)
    ]
    old = await record_event(db, "course.published", {"courseId": uuid.uuid4()})
    while await EventDispatcher(db, []).dispatch_once():
        pass
    await db.execute("UPDATE events SET occurred_at = now() - interval '40 days'")
    await sweep_once(db)
    assert await db.fetchval("SELECT count(*) FROM events WHERE id = $1", old) == 1  # both behind
    await db.execute(
        "UPDATE webhook_endpoints SET disabled_at = now() - interval '40 days' WHERE id = $1",
        endpoints[0]["id"],
    )
    await sweep_once(db)
    assert await db.fetchval("SELECT count(*) FROM events WHERE id = $1", old) == 1  # one behind
    await db.execute("UPDATE webhook_endpoints SET disabled_at = now() - interval '40 days'")
    await sweep_once(db)
    assert await db.fetchval("SELECT count(*) FROM events WHERE id = $1", old) == 0
