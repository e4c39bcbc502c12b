"""Completing a lesson: the one code path behind POST /lessons/:id/complete and a heartbeat that
crosses the watch threshold.

One transaction: lock the enrollment, check the watch rule, mark the lesson, recompute the
enrollment's progress from the stored rows, complete it when every lesson is done and issue its
certificate (one statement of a stored function for most completions; for the one that issues
the certificate, one that reads what to sign and one that stores it all, signed in between).
The enrollment's row lock queues concurrent completions of one enrollment, so each counts the
ones before it and exactly one issues the certificate; the unique enrollment_id of certificates
backs that up.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from lms.context import AppContext
from lms.db.queries import certificates as certificate_sql
from lms.db.queries import learning as sql
from lms.domain.admin.system_settings import RuntimeSettings
from lms.domain.certificates import services as certificates
from lms.domain.errors import Conflict, NotFound
from lms.domain.events.log import event_texts, record_events
from lms.domain.learning.schemas import LessonCompletion
from lms.invariants import present

NOT_ENROLLED = "no such lesson in a course you are enrolled in"


@dataclass(frozen=True, slots=True)
class WatchRule:
    threshold_percent: float
    required: bool  # requireWatchToComplete

    @classmethod
    def of(cls, settings: RuntimeSettings) -> WatchRule:
        return cls(float(settings.completion_threshold_percent), settings.require_watch_to_complete)

    def needed_seconds(self, duration_seconds: float) -> float:
        return duration_seconds * self.threshold_percent / 100.0

    def reached(self, watched_seconds: float, duration_seconds: float | None) -> bool:
        """Whether watching alone completes the lesson (needs a known, non-zero length)."""
        return bool(duration_seconds) and watched_seconds >= self.needed_seconds(
            duration_seconds or 0.0
        )


STILL_PROCESSING = (
    "this lesson's video is still processing: its length is not known yet, so how much of it "
    "was watched cannot be measured; try again in a few minutes"
)


def _check_watched(rule: WatchRule, facts: asyncpg.Record) -> None:
    """With requireWatchToComplete, a video lesson completes only once watched to the threshold.
    A video whose length is not known yet (measured when it is attached, or by the worker as
    soon as it has the file) cannot be measured, so it cannot be completed yet either: skipping
    the rule for it would let any lesson be completed unwatched while its video processes."""
    if not rule.required or not facts["has_video"] or facts["lesson_completed"]:
        return
    duration = facts["duration_seconds"]
    if not duration:
        raise Conflict(STILL_PROCESSING)
    watched = facts["watched_seconds"]
    if rule.reached(watched, duration):
        return
    left = math.ceil(rule.needed_seconds(duration) - watched)
    raise Conflict(
        f"watch {left} more second{'s' if left != 1 else ''} of this lesson's video first: "
        f"{watched / duration * 100:.1f}% of {duration:.0f} s watched, "
        f"{rule.threshold_percent:g}% needed"
    )


async def complete_lesson(
    db: asyncpg.Pool, ctx: AppContext, user_id: uuid.UUID, lesson_id: uuid.UUID
) -> LessonCompletion:
    rule = WatchRule.of(await ctx.system.get())
    # Most completions issue no certificate: they take one round trip (lms_complete_or_prepare,
    # the same lock, rule, marking and tally as the transaction below, in one statement). The
    # lesson that completes its course takes two: that one (which then also reads what the
    # certificate is signed over), and one that stores lesson, enrollment, certificate and
    # events together (_complete_with_certificate).
    quick = await sql.complete_in_one_statement(
        db,
        lesson_id,
        user_id,
        require_watch=rule.required,
        threshold_percent=rule.threshold_percent,
    )
    if quick is None:
        raise NotFound(NOT_ENROLLED)
    if not quick["allowed"]:
        _check_watched(rule, quick)  # the 409 (should the two ever disagree: decided below)
    elif quick["needs_certificate"]:
        issued = await _complete_with_certificate(db, ctx, rule, lesson_id, user_id, quick)
        if issued is not None:
            return issued
    else:
        certificate = None
        if quick["completed"]:  # completed before: the same certificate, every time
            row = present(
                await certificate_sql.by_id(db, quick["certificate_id"]),
                "certificates are never deleted",
            )
            certificate = certificates.to_certificate(ctx, row)
        return LessonCompletion(
            lesson_id=lesson_id,
            completed=True,
            progress=float(quick["progress"]),
            course_completed=quick["completed"],
            certificate=certificate,
        )
    # The general transaction: the course's last lesson whose certificate could not be stored
    # as prepared (something it was built from changed meanwhile), and any disagreement.
    async with db.acquire() as conn, conn.transaction():
        facts = await sql.lock_for_completion(conn, lesson_id, user_id)
        if facts is None:
            raise NotFound(NOT_ENROLLED)
        _check_watched(rule, facts)
        state = await sql.mark_completed(
            conn,
            enrollment_id=facts["enrollment_id"],
            lesson_id=lesson_id,
            user_id=user_id,
            course_id=facts["course_id"],
        )
        # This completion's events, written together (with certificate.issued when it issues
        # one): one statement, not one each.
        events: list[tuple[str, dict[str, object]]] = []
        if not facts["lesson_completed"]:  # a lesson completes once: one event
            events.append(
                (
                    "lesson.completed",
                    {
                        "enrollmentId": facts["enrollment_id"],
                        "userId": user_id,
                        "courseId": facts["course_id"],
                        "lessonId": lesson_id,
                        "progress": float(state["progress"]),
                    },
                )
            )
        certificate = None
        if state["completed"] and not facts["course_completed"]:
            events.append(
                (
                    "course.completed",
                    {
                        "enrollmentId": facts["enrollment_id"],
                        "userId": user_id,
                        "courseId": facts["course_id"],
                        "completedAt": state["completed_at"],
                    },
                )
            )
        if state["completed"] and facts["certificate_id"] is None:
            row = await certificates.issue(ctx, conn, facts, events)
        else:
            await record_events(conn, events)
            row = (
                await certificate_sql.by_id(conn, facts["certificate_id"])  # the same, always
                if state["completed"]
                else None
            )
        if state["completed"]:
            row = present(row, "certificates are never deleted")
            certificate = certificates.to_certificate(ctx, row)
    return LessonCompletion(
        lesson_id=lesson_id,
        completed=True,
        progress=float(state["progress"]),
        course_completed=state["completed"],
        certificate=certificate,
    )


async def _complete_with_certificate(
    db: asyncpg.Pool,
    ctx: AppContext,
    rule: WatchRule,
    lesson_id: uuid.UUID,
    user_id: uuid.UUID,
    prepared: asyncpg.Record,
) -> LessonCompletion | None:
    """The lesson that completes its course, with the course's certificate: signed here, with
    no transaction open, from what lms_complete_or_prepare() read, then stored with the lesson,
    the enrollment and the completion's events in one statement. None when that statement
    finds something changed meanwhile (it writes nothing then)."""
    enrollment_id, course_id = prepared["enrollment_id"], prepared["course_id"]
    completed_at = datetime.now(UTC)
    new = certificates.sign_new(
        ctx,
        enrollment_id=enrollment_id,
        course_id=course_id,
        learner_name=prepared["learner_name"],
        course_title=prepared["course_title"],
        status_number=prepared["status_number"],
    )
    # The events the transaction path writes for this outcome, in its order.
    events: list[tuple[str, dict[str, object]]] = []
    ids = {"enrollmentId": enrollment_id, "userId": user_id, "courseId": course_id}
    if not prepared["lesson_completed"]:
        events.append(("lesson.completed", {**ids, "lessonId": lesson_id, "progress": 100.0}))
    events.append(("course.completed", {**ids, "completedAt": completed_at}))
    events.append(
        (
            "certificate.issued",
            certificates.certificate_event(
                ctx,
                {
                    "id": new.certificate_id,
                    "enrollment_id": enrollment_id,
                    "user_id": user_id,
                    "course_id": course_id,
                    "serial_hash": new.serial_hash,
                    "issued_at": new.issued_at,
                    "status": "VALID",
                },
            ),
        )
    )
    try:
        row = await sql.complete_with_certificate(
            db,
            lesson_id,
            user_id,
            require_watch=rule.required,
            threshold_percent=rule.threshold_percent,
            lesson_completed=prepared["lesson_completed"],
            completed_at=completed_at,
            certificate=new,
            events=event_texts(events),
        )
    except asyncpg.UniqueViolationError:  # a certificate appeared after all: decide afresh
        return None
    if row is None:
        return None
    return LessonCompletion(
        lesson_id=lesson_id,
        completed=True,
        progress=100.0,
        course_completed=True,
        certificate=certificates.to_certificate(ctx, row),
    )
