"""The lesson that completes a course, in two statements (lms_0020): what the certificate is
signed over is read by the first, the signed certificate is stored with the lesson, the
enrollment and the events by the second, and only while all it was built from still holds.
Each test changes one of those things between the two statements and sees the second write
nothing, then the service decide afresh."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar

from lms.db.queries import learning as sql
from lms.domain.certificates import services as certificates
from lms.domain.events.log import event_texts
from lms.domain.learning.completion import complete_lesson
from tests.conftest import TestUser
from tests.integration.learning.helpers import complete, course_with_lessons, enroll


async def _state(db: asyncpg.Pool, learner: TestUser) -> dict[str, Any]:
    """What a completion writes, for the learner's one enrollment."""
    return {
        "certificates": await db.fetchval(
            "SELECT count(*) FROM certificates WHERE user_id = $1", learner.id
        ),
        "completed_lessons": await db.fetchval(
            "SELECT count(*) FROM lesson_progress WHERE user_id = $1 AND completed", learner.id
        ),
        "enrollment": tuple(
            await db.fetchrow(
                "SELECT progress, completed, completed_at FROM enrollments WHERE user_id = $1",
                learner.id,
            )
        ),
        "events": await db.fetchval("SELECT count(*) FROM events"),
    }


async def _prepared_then_stored(
    app: Litestar, db: asyncpg.Pool, learner: TestUser, lesson_id: uuid.UUID
) -> tuple[asyncpg.Record, Callable[[], Awaitable[asyncpg.Record | None]]]:
    """The first statement's answer, and the second statement (signing as the service does)."""
    ctx = app.state.ctx
    prepared = await sql.complete_in_one_statement(
        db, lesson_id, learner.id, require_watch=False, threshold_percent=95.0
    )
    assert prepared is not None and prepared["needs_certificate"]
    assert prepared["status_number"] is not None and prepared["course_title"]

    async def store() -> asyncpg.Record | None:
        new = certificates.sign_new(
            ctx,
            enrollment_id=prepared["enrollment_id"],
            course_id=prepared["course_id"],
            learner_name=prepared["learner_name"],
            course_title=prepared["course_title"],
            status_number=prepared["status_number"],
        )
        return await sql.complete_with_certificate(
            db,
            lesson_id,
            learner.id,
            require_watch=False,
            threshold_percent=95.0,
            lesson_completed=prepared["lesson_completed"],
            completed_at=datetime.now(UTC),
            certificate=new,
            events=event_texts([("course.completed", {"enrollmentId": "x"})]),
        )

    return prepared, store


async def _retitle(db: asyncpg.Pool, course_id: uuid.UUID, learner: TestUser) -> None:
    await db.execute(
        "UPDATE courses SET title = title || ' (2nd edition)' WHERE id = $1", course_id
    )


async def _rename(db: asyncpg.Pool, course_id: uuid.UUID, learner: TestUser) -> None:
    await db.execute("UPDATE users SET full_name = 'Renamed Learner' WHERE id = $1", learner.id)


async def _add_lesson(db: asyncpg.Pool, course_id: uuid.UUID, learner: TestUser) -> None:
    await db.execute(
        "INSERT INTO lessons (course_id, title, position) VALUES ($1, 'Added', 99)", course_id
    )


@pytest.mark.parametrize(
    ("change", "course_completes"),
    [(_retitle, True), (_rename, True), (_add_lesson, False)],
    ids=["course retitled", "learner renamed", "lesson added"],
)
async def test_a_change_between_the_two_statements_writes_nothing_then_the_service_decides(
    api: httpx.AsyncClient,
    app: Litestar,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
    change: Callable[[asyncpg.Pool, uuid.UUID, TestUser], Awaitable[None]],
    course_completes: bool,
) -> None:
    course, lessons = await course_with_lessons(api, db, creator, admin, [None, None])
    await enroll(api, learner, course["id"])
    assert (await complete(api, learner, lessons[0]["id"])).status_code == 200
    last = uuid.UUID(lessons[1]["id"])
    _, store = await _prepared_then_stored(app, db, learner, last)
    await change(db, uuid.UUID(course["id"]), learner)
    before = await _state(db, learner)

    assert await store() is None
    assert await _state(db, learner) == before

    done = await complete_lesson(db, app.state.ctx, learner.id, last)
    assert done.course_completed is course_completes
    if course_completes:
        certificate = done.certificate
        assert certificate is not None
        stored = await db.fetchrow(
            "SELECT learner_name, course_title FROM certificates WHERE id = $1", certificate.id
        )
        names = await db.fetchrow(
            "SELECT c.title, u.full_name FROM courses c, users u WHERE c.id = $1 AND u.id = $2",
            uuid.UUID(course["id"]),
            learner.id,
        )
        assert (stored["course_title"], stored["learner_name"]) == tuple(names)
    else:
        assert done.certificate is None
        assert await db.fetchval("SELECT count(*) FROM certificates") == 0


async def test_a_certificate_issued_between_the_two_statements_stands_alone(
    api: httpx.AsyncClient,
    app: Litestar,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    """Two requests for the last lesson: both prepared, the first stores its certificate, the
    second finds it and writes nothing (one certificate, one set of events)."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [None])
    await enroll(api, learner, course["id"])
    lesson = uuid.UUID(lessons[0]["id"])
    _, first = await _prepared_then_stored(app, db, learner, lesson)
    _, second = await _prepared_then_stored(app, db, learner, lesson)
    assert await first() is not None
    after_first = await _state(db, learner)
    assert await second() is None
    assert await _state(db, learner) == after_first
    assert after_first["certificates"] == 1


async def test_the_events_of_the_two_statements_match_what_they_stored(
    api: httpx.AsyncClient,
    db: asyncpg.Pool,
    learner: TestUser,
    creator: TestUser,
    admin: TestUser,
) -> None:
    """lesson.completed, course.completed and certificate.issued, in that order, carrying the
    times and ids the rows hold (the course's completedAt is the enrollment's completed_at)."""
    course, lessons = await course_with_lessons(api, db, creator, admin, [None, None])
    enrollment = await enroll(api, learner, course["id"])
    await complete(api, learner, lessons[0]["id"])
    seq = await db.fetchval("SELECT coalesce(max(seq), 0) FROM events")
    response = await complete(api, learner, lessons[1]["id"])
    assert response.status_code == 200, response.text
    certificate = response.json()["certificate"]
    rows = await db.fetch("SELECT type, data FROM events WHERE seq > $1 ORDER BY seq", seq)
    types = [r["type"] for r in rows]
    assert types == ["lesson.completed", "course.completed", "certificate.issued"]
    lesson_event, course_event, issued_event = (r["data"] for r in rows)
    ids = {"enrollmentId": enrollment["id"], "userId": str(learner.id), "courseId": course["id"]}
    assert lesson_event == {**ids, "lessonId": lessons[1]["id"], "progress": 100.0}
    completed_at = await db.fetchval(
        "SELECT completed_at FROM enrollments WHERE id = $1", uuid.UUID(enrollment["id"])
    )
    assert datetime.fromisoformat(course_event.pop("completedAt")) == completed_at
    assert course_event == ids
    stored = await db.fetchrow(
        "SELECT id, serial_hash, issued_at FROM certificates WHERE id = $1",
        uuid.UUID(certificate["id"]),
    )
    assert datetime.fromisoformat(issued_event.pop("issuedAt")) == stored["issued_at"]
    assert issued_event.pop("verifyUrl").endswith(f"/certificates/verify/{stored['serial_hash']}")
    assert issued_event == {**ids, "certificateId": str(stored["id"]), "status": "VALID"}
