"""POST /lessons/{id}/progress (the player's heartbeat) and POST /lessons/{id}/complete, with
the course's completion and its certificate."""

from __future__ import annotations

import math
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import Double, Uuid, and_, bindparam, func, select, text
from sqlalchemy.orm import aliased

from .caches import CACHES, UserState, WatchRule
from .config import SessionDep, Settings, SettingsDep, get_sessionmaker
from .models import (
    Certificate,
    Course,
    Enrollment,
    Lesson,
    LessonProgress,
    SystemSettings,
    User,
    certificate_status_seq,
)
from .schemas import (
    CertificateCourse,
    CertificateLearner,
    CertificateOut,
    Heartbeat,
    LessonCompletion,
)
from .security import CurrentUser, sign_certificate, status_position

router = APIRouter()

NOT_ENROLLED = "no such lesson in a course you are enrolled in"
STILL_PROCESSING = (
    "this lesson's video is still processing: its length is not known yet, so how much of it "
    "was watched cannot be measured; try again in a few minutes"
)
# The watch clock's rules, as lms's (one clock per enrollment, shared by its lessons): a jump
# forward up to the real time available plus SEEK_SLACK_SECONDS is playback, more is a seek;
# heartbeats of one enrollment at least MIN_INTERVAL_SECONDS apart (else 429, Retry-After: 1);
# real time a heartbeat could not use carries over up to WATCH_CARRY_SECONDS.
SEEK_SLACK_SECONDS = 2.0
MIN_INTERVAL_SECONDS = 0.5
WATCH_CARRY_SECONDS = 2.0
RETRY_AFTER_SECONDS = 1
TOO_SOON = "heartbeat too soon: one a second per enrollment is enough (this one changed nothing)"

# The heartbeat in one statement, as lms runs it (this peer does not import lms: the statement is
# restated here, rule for rule). The ORM cannot say it: a row lock on the enrollment, decisions
# on the values the lock returns, a nummultirange union, and three tables written in one round
# trip. In lms's lock order (the enrollment, then the lesson's row), so heartbeats and
# completions of one enrollment queue up instead of deadlocking:
# - target: the enrollment, locked, with the verdicts: in the video, on time (MIN_INTERVAL after
#   the enrollment's previous accepted heartbeat), and the real time not yet credited (budget);
# - previous: the lesson's row, if a heartbeat wrote it (locked: the latest version);
# - span: a jump forward within budget + slack is playback, credited from where credit stopped
#   (credited_to) for as much as the budget pays, no further than the new position;
# - saved: the lesson's row (without playback nothing stays owed, unless the player stood still);
#   clock: the enrollment's watch clock moves on by what was gained, never lagging now by more
#   than the carry. Positions rounded to the millisecond, as lms keeps them.
# A refused heartbeat (404, 400, 429) writes nothing.
HEARTBEAT = text(
    """
WITH target AS (
    SELECT l.id AS lesson_id, l.duration_seconds, e.id AS enrollment_id, e.watch_clock,
           (l.duration_seconds IS NULL OR :position <= l.duration_seconds) AS in_video,
           (e.last_heartbeat_at IS NULL
            OR e.last_heartbeat_at <= now() - make_interval(secs => :min_interval)) AS on_time,
           extract(epoch FROM now() - e.watch_clock)::float8 AS budget
    FROM lessons l JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = :user_id
    WHERE l.id = :lesson_id
    FOR NO KEY UPDATE OF e
), accepted AS (
    SELECT * FROM target WHERE in_video AND on_time
), previous AS (
    SELECT p.position_seconds, coalesce(p.credited_to, p.position_seconds) AS credited_to,
           p.watched, p.watched_seconds
    FROM lesson_progress p
    WHERE p.enrollment_id = (SELECT a.enrollment_id FROM accepted a)
      AND p.lesson_id = :lesson_id AND p.last_heartbeat_at IS NOT NULL
    FOR NO KEY UPDATE OF p
), span AS (
    SELECT pr.watched, pr.watched_seconds,
           numrange(round(pr.credited_to::numeric, 3),
                    round((pr.credited_to + least(:position - pr.credited_to, a.budget))::numeric,
                          3)) AS played
    FROM accepted a JOIN previous pr ON true
    WHERE :position > pr.position_seconds
      AND :position - pr.position_seconds <= a.budget + :slack
), credit AS (
    SELECT w.watched, upper(s.played)::float8 AS credited_to, m.seconds AS watched_seconds,
           greatest(m.seconds - s.watched_seconds, 0) AS gained
    FROM span s,
         LATERAL (SELECT s.watched + nummultirange(s.played) AS watched) w,
         LATERAL (SELECT coalesce(sum(upper(r) - lower(r)), 0)::float8 AS seconds
                  FROM unnest(w.watched) AS r) m
), saved AS (
    INSERT INTO lesson_progress AS p (user_id, lesson_id, enrollment_id, position_seconds,
                                      credited_to, last_heartbeat_at, updated_at)
    SELECT :user_id, a.lesson_id, a.enrollment_id, :position, :position, now(), now()
    FROM accepted a
    ON CONFLICT (enrollment_id, lesson_id) DO UPDATE SET
        watched = coalesce((SELECT c.watched FROM credit c), p.watched),
        watched_seconds = coalesce((SELECT c.watched_seconds FROM credit c), p.watched_seconds),
        credited_to = coalesce(
            (SELECT c.credited_to FROM credit c),
            CASE WHEN EXCLUDED.position_seconds = p.position_seconds THEN p.credited_to
                 ELSE EXCLUDED.position_seconds END),
        position_seconds = EXCLUDED.position_seconds,
        last_heartbeat_at = EXCLUDED.last_heartbeat_at,
        updated_at = EXCLUDED.updated_at
    RETURNING p.watched_seconds, p.completed
), clock AS (
    UPDATE enrollments e
    SET last_heartbeat_at = now(),
        watch_clock = least(now(), greatest(
            coalesce(a.watch_clock
                     + make_interval(secs => coalesce((SELECT c.gained FROM credit c), 0)),
                     now()),
            now() - make_interval(secs => :carry)))
    FROM accepted a
    WHERE e.id = a.enrollment_id
)
SELECT t.duration_seconds, t.in_video, t.on_time, s.watched_seconds, s.completed
FROM target t LEFT JOIN saved s ON true
"""
).bindparams(
    bindparam("lesson_id", type_=Uuid),
    bindparam("user_id", type_=Uuid),
    bindparam("position", type_=Double),
    bindparam("slack", type_=Double),
    bindparam("min_interval", type_=Double),
    bindparam("carry", type_=Double),
)


# Completion, step two, restated from lms (lms.db.queries.learning.MARK_COMPLETED): mark the
# lesson and recompute the enrollment from the rows, in one statement under the enrollment's lock.
# The count reads the other lessons' rows and adds this one (whose row the same statement writes,
# and so cannot see). An upsert feeding an UPDATE ... FROM is beyond the ORM's unit of work; Core
# could compose it as CTEs, but the SQL says it plainer.
MARK_COMPLETED = text(
    """
WITH marked AS (
    INSERT INTO lesson_progress AS p
        (user_id, lesson_id, enrollment_id, completed, completed_at, updated_at)
    VALUES (:user_id, :lesson_id, :enrollment_id, true, now(), now())
    ON CONFLICT (enrollment_id, lesson_id) DO UPDATE
        SET completed = true, completed_at = coalesce(p.completed_at, now()), updated_at = now()
    RETURNING p.lesson_id
), tally AS (
    SELECT (SELECT count(*) FROM lesson_progress
            WHERE enrollment_id = :enrollment_id AND completed AND lesson_id <> :lesson_id) + 1
               AS done,
           (SELECT count(*) FROM lessons WHERE course_id = :course_id) AS total
)
UPDATE enrollments e
SET progress = round(100.0 * least(t.done, t.total) / greatest(t.total, 1), 2),
    completed = e.completed OR t.done >= t.total,
    completed_at = CASE WHEN e.completed THEN e.completed_at
                        WHEN t.done >= t.total THEN now() END
FROM tally t, (SELECT count(*) FROM marked) m
WHERE e.id = :enrollment_id
RETURNING e.progress, e.completed
"""
).bindparams(
    bindparam("user_id", type_=Uuid),
    bindparam("lesson_id", type_=Uuid),
    bindparam("enrollment_id", type_=Uuid),
    bindparam("course_id", type_=Uuid),
)


def not_enrolled() -> HTTPException:
    return HTTPException(404, NOT_ENROLLED)


async def watch_rule(session: Any) -> WatchRule:
    """The completion rule of the settings row: from the cache, else the row."""
    rule = CACHES.rule
    if rule is not None and CACHES.fresh(rule.loaded_at):
        return rule
    settings = await session.get(SystemSettings, 1)
    rule = WatchRule(
        float(settings.completion_threshold_percent),
        settings.require_watch_to_complete,
        time.monotonic(),
    )
    if CACHES.listening:
        CACHES.rule = rule
    return rule


@router.post("/lessons/{lesson_id:uuid}/progress", status_code=204)
async def heartbeat(
    lesson_id: uuid.UUID,
    body: Heartbeat,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    # One statement in autocommit mode (SessionDep): its own transaction, as lms runs it.
    row = (
        await session.execute(
            HEARTBEAT,
            {
                "lesson_id": lesson_id,
                "user_id": user.id,
                "position": body.position_seconds + 0.0,  # -0.0 is 0
                "slack": SEEK_SLACK_SECONDS,
                "min_interval": MIN_INTERVAL_SECONDS,
                "carry": WATCH_CARRY_SECONDS,
            },
        )
    ).one_or_none()
    if row is None:
        raise not_enrolled()
    if not row.in_video:
        raise HTTPException(
            400,
            f"positionSeconds {body.position_seconds:g} is past the end of the video "
            f"({row.duration_seconds:g} s)",
        )
    if not row.on_time:
        raise HTTPException(429, TOO_SOON, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if not row.completed:
        rule = await watch_rule(session)
        duration = row.duration_seconds
        if duration and row.watched_seconds >= duration * rule.threshold_percent / 100.0:
            await session.close()  # its connection back to the pool before completion takes one
            await complete_lesson(settings, user, lesson_id)
    return Response(status_code=204)


@router.post("/lessons/{lesson_id:uuid}/complete")
async def complete(
    lesson_id: uuid.UUID, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> LessonCompletion:
    # The token check's session (the request's, shared with CurrentUser) gives its connection
    # back first: completion takes one of its own, and a request holding two could starve the pool.
    await session.close()
    return await complete_lesson(settings, user, lesson_id)


async def complete_lesson(
    settings: Settings, user: UserState, lesson_id: uuid.UUID
) -> LessonCompletion:
    """lms's statements in one transaction: (1) lock the enrollment and read what the rules and
    the certificate need, (2) mark the lesson and recompute the enrollment, then the first time
    the course is complete (3) the certificate's status number and (4) the certificate."""
    async with get_sessionmaker()() as session, session.begin():
        rule = await watch_rule(session)
        creator, learner = aliased(User), aliased(User)
        facts = (
            await session.execute(
                select(
                    Enrollment.id,
                    Enrollment.course_id,
                    Lesson.duration_seconds,
                    (Lesson.video_version > 0).label("has_video"),
                    func.coalesce(LessonProgress.completed, False).label("lesson_completed"),
                    func.coalesce(LessonProgress.watched_seconds, 0.0).label("watched_seconds"),
                    Course.title.label("course_title"),
                    func.coalesce(creator.name, creator.full_name, creator.username).label(
                        "creator_name"
                    ),
                    func.coalesce(learner.full_name, learner.name, learner.username).label(
                        "learner_name"
                    ),
                    Certificate,
                )
                .select_from(Lesson)
                .join(
                    Enrollment,
                    and_(Enrollment.course_id == Lesson.course_id, Enrollment.user_id == user.id),
                )
                .join(Course, Course.id == Enrollment.course_id)
                .join(creator, creator.id == Course.creator_id)
                .join(learner, learner.id == Enrollment.user_id)
                .outerjoin(
                    LessonProgress,
                    and_(
                        LessonProgress.enrollment_id == Enrollment.id,
                        LessonProgress.lesson_id == Lesson.id,
                    ),
                )
                .outerjoin(Certificate, Certificate.enrollment_id == Enrollment.id)
                .where(Lesson.id == lesson_id)
                # FOR NO KEY UPDATE OF enrollments, as lms locks it
                .with_for_update(of=Enrollment, key_share=True)
            )
        ).one_or_none()
        if facts is None:
            raise not_enrolled()
        duration = facts.duration_seconds
        if rule.required and facts.has_video and not facts.lesson_completed:
            # A video whose length is not known yet cannot be measured, so not completed either.
            if not duration:
                raise HTTPException(409, STILL_PROCESSING)
            watched = facts.watched_seconds
            needed = duration * rule.threshold_percent / 100.0
            if watched < needed:
                left = math.ceil(needed - watched)
                raise HTTPException(
                    409,
                    f"watch {left} more second{'s' if left != 1 else ''} of this lesson's video "
                    f"first: {watched / duration * 100:.1f}% of {duration:.0f} s watched, "
                    f"{rule.threshold_percent:g}% needed",
                )
        state = (
            await session.execute(
                MARK_COMPLETED,
                {
                    "user_id": user.id,
                    "lesson_id": lesson_id,
                    "enrollment_id": facts.id,
                    "course_id": facts.course_id,
                },
            )
        ).one()
        certificate = None
        if state.completed:
            certificate = facts.Certificate
            if certificate is None:
                certificate = await issue_certificate(session, settings, user.id, facts)
                session.add(certificate)
    return LessonCompletion(
        lesson_id=lesson_id,
        completed=True,
        progress=float(state.progress),
        course_completed=state.completed,
        certificate=None if certificate is None else to_certificate(settings, certificate),
    )


async def issue_certificate(
    session: Any, settings: Settings, user_id: uuid.UUID, facts: Any
) -> Certificate:
    status_list, status_index = status_position(
        await session.scalar(select(certificate_status_seq.next_value()))
    )
    certificate = Certificate(
        id=uuid.uuid4(),
        user_id=user_id,
        course_id=facts.course_id,
        enrollment_id=facts.id,
        serial_hash=secrets.token_hex(24),
        learner_name=facts.learner_name,
        course_title=facts.course_title,
        creator_name=facts.creator_name,
        status="VALID",
        issued_at=datetime.now(UTC).replace(microsecond=0),
        revoked_at=None,
        status_list=status_list,
        status_index=status_index,
    )
    certificate.jws = sign_certificate(
        settings,
        certificate_id=certificate.id,
        serial_hash=certificate.serial_hash,
        enrollment_id=facts.id,
        issued_at=certificate.issued_at,
        learner_name=certificate.learner_name,
        course_id=facts.course_id,
        course_title=facts.course_title,
        status_list=status_list,
        status_index=status_index,
    )
    return certificate


def verify_url(settings: Settings, serial_hash: str) -> str:
    return f"{settings.base_url}/certificates/verify/{serial_hash}"


def to_certificate(settings: Settings, certificate: Certificate) -> CertificateOut:
    return CertificateOut(
        id=certificate.id,
        serial_hash=certificate.serial_hash,
        issued_at=certificate.issued_at,
        enrollment_id=certificate.enrollment_id,
        course=CertificateCourse(id=certificate.course_id, title=certificate.course_title),
        learner=CertificateLearner(full_name=certificate.learner_name),
        creator_name=certificate.creator_name,
        verify_url=verify_url(settings, certificate.serial_hash),
        status=certificate.status,
        revoked_at=certificate.revoked_at,
        jws=credential_of(certificate),
    )


def credential_of(certificate: Certificate) -> str | None:
    """The VC-JWT, unless the certificate is revoked (as lms: a revoked certificate's answers
    carry no credential that would look valid to a verifier skipping the status check)."""
    return certificate.jws if certificate.status == "VALID" else None
