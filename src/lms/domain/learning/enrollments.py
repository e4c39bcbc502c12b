"""Enrolling (a learner themself, or an admin for many at once) and reading one's progress."""

from __future__ import annotations

import uuid
from collections import Counter

import asyncpg

from lms.db.queries import courses as course_sql
from lms.db.queries import learning as sql
from lms.db.tables import CourseStatus
from lms.domain import audit
from lms.domain.auth.authentication import Principal
from lms.domain.errors import Conflict, Invalid, NotFound, PaymentRequired
from lms.domain.learning.concurrency import not_found_if_deleted_meanwhile
from lms.domain.learning.schemas import (
    MAX_BULK_ROWS,
    BulkEnrollmentCounts,
    BulkEnrollmentResponse,
    BulkEnrollmentResult,
    CourseProgress,
    Enrollment,
    LessonState,
)


def to_enrollment(row: asyncpg.Record) -> Enrollment:
    return Enrollment(
        id=row["id"],
        course_id=row["course_id"],
        user_id=row["user_id"],
        progress=float(row["progress"]),
        completed=row["completed"],
        enrolled_at=row["enrolled_at"],
        completed_at=row["completed_at"],
    )


async def enroll(
    db: asyncpg.Pool, principal: Principal, course_id: uuid.UUID
) -> tuple[Enrollment, bool]:
    """(the enrollment, whether it is new). Only a PUBLISHED course takes enrollments: any other
    is 404, as for the catalog. Two racing requests both get the one row the unique (user,
    course) constraint let in."""
    async with db.acquire() as conn:
        with not_found_if_deleted_meanwhile("no such course"):
            row = await sql.enroll(conn, principal.user_id, course_id)
        if row is not None:
            return to_enrollment(row), True
        # A separate statement, so it sees a row a concurrent request committed meanwhile.
        row = await sql.enrollment_in_published(conn, principal.user_id, course_id)
        if row is None:
            course = await course_sql.meta(conn, course_id)
            if course is not None and course["status"] == CourseStatus.PUBLISHED:
                # Published, not enrolled, not inserted: the course is sold and not paid for.
                path = f"/courses/{course_id}/checkout"
                raise PaymentRequired(
                    f"this course is sold: buy it at POST {path}", checkout_path=path
                )
    if row is None:
        raise NotFound("no such course")
    return to_enrollment(row), False


async def progress_list(db: asyncpg.Pool, principal: Principal) -> str:
    """GET /progress as JSON text (PostgreSQL builds it with the catalog's course summary)."""
    return await sql.progress_list_json(db, principal.user_id)


async def course_progress(
    db: asyncpg.Pool, principal: Principal, course_id: uuid.UUID
) -> CourseProgress:
    async with (
        db.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        enrollment = await sql.course_progress(conn, principal.user_id, course_id)
        if enrollment is None:
            raise NotFound("you are not enrolled in this course")
        lessons = await sql.lesson_states(conn, enrollment["id"], course_id)
    return CourseProgress(
        enrollment_id=enrollment["id"],
        course_id=course_id,
        progress=float(enrollment["progress"]),
        completed=enrollment["completed"],
        completed_at=enrollment["completed_at"],
        certificate_id=enrollment["certificate_id"],
        lessons=[
            LessonState(
                lesson_id=r["lesson_id"],
                title=r["title"],
                order=r["position"],
                duration_seconds=r["duration_seconds"],
                completed=r["completed"],
                completed_at=r["completed_at"],
                position_seconds=r["position_seconds"],
                watched_seconds=r["watched_seconds"],
            )
            for r in lessons
        ],
    )


# ---------------------------------------------------------------------------------------------
# admin bulk enrollment


def _normalise(emails: list[str]) -> list[str]:
    if not emails:
        raise Invalid("give at least one email address")
    if len(emails) > MAX_BULK_ROWS:
        raise Invalid(f"at most {MAX_BULK_ROWS} addresses per request")
    cleaned = []
    for n, email in enumerate(emails, start=1):
        value = email.strip().lower()
        if not value or len(value) > 320 or any(ch < " " for ch in value):
            raise Invalid(f"row {n} is not an email address: {email[:80]!r}")
        cleaned.append(value)
    return cleaned


async def enroll_many(
    db: asyncpg.Pool, admin: Principal, course_id: uuid.UUID, emails: list[str]
) -> BulkEnrollmentResponse:
    addresses = _normalise(emails)
    async with db.acquire() as conn, conn.transaction():
        # No lock on the course row: a PUBLISHED course never changes state, and each insert's
        # foreign-key check holds it against deletion. Locking it FOR UPDATE would deadlock with
        # a learner enrolling at the same moment (their insert waits on the course row's key lock
        # while holding the enrollment row this statement waits on).
        course = await course_sql.meta(conn, course_id)
        if course is None:
            raise NotFound("no such course")
        if course["status"] != CourseStatus.PUBLISHED:
            raise Conflict(
                f"the course is {course['status']}: learners can be enrolled only once it is "
                "PUBLISHED"
            )
        with not_found_if_deleted_meanwhile("no such course"):
            rows = await sql.enroll_many(conn, course_id, addresses)
        tally = Counter(row["status"] for row in rows)
        counts = BulkEnrollmentCounts(
            enrolled=tally["ENROLLED"],
            already_enrolled=tally["ALREADY_ENROLLED"],
            no_such_user=tally["NO_SUCH_USER"],
        )
        await audit.record(
            conn,
            actor_id=admin.user_id,
            action="course.bulk_enroll",
            target_type="course",
            target_id=course_id,
            after={
                "rows": len(rows),
                "enrolled": counts.enrolled,
                "alreadyEnrolled": counts.already_enrolled,
                "noSuchUser": counts.no_such_user,
            },
        )
    # Rows come back in input order; each result names the address as it was given.
    results = [
        BulkEnrollmentResult(email=given.strip(), status=row["status"])
        for given, row in zip(emails, rows, strict=True)
    ]
    return BulkEnrollmentResponse(results=results, counts=counts)
