"""POST /lessons/{id}/progress (the player's heartbeat) and POST /lessons/{id}/complete, with
the course's completion and its certificate."""

from __future__ import annotations

import math
import secrets
import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.orm import joinedload

from .config import SessionDep, Settings, SettingsDep
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
# A jump forward up to the time since the previous heartbeat plus this much is playback; more
# is a seek, which is not counted as watched.
SEEK_SLACK_SECONDS = 2.0
MILLI = Decimal("0.001")


def not_enrolled() -> HTTPException:
    return HTTPException(404, NOT_ENROLLED)


def millis(seconds: float) -> Decimal:
    """round(seconds::numeric, 3) as PostgreSQL computes it (15 significant digits first)."""
    return Decimal(f"{seconds:.15g}").quantize(MILLI, rounding=ROUND_HALF_UP)


def merged(spans: list[Range[Decimal]]) -> list[Range[Decimal]]:
    """The union of [lower, upper) spans, as a multirange keeps them: sorted, disjoint."""
    out: list[Range[Decimal]] = []
    for span in sorted((s for s in spans if s.lower < s.upper), key=lambda s: s.lower):
        if out and span.lower <= out[-1].upper:
            if span.upper > out[-1].upper:
                out[-1] = Range(out[-1].lower, span.upper, bounds="[)")
        else:
            out.append(Range(span.lower, span.upper, bounds="[)"))
    return out


async def watch_rule(session: Any) -> tuple[float, bool]:
    settings = await session.get(SystemSettings, 1)
    return float(settings.completion_threshold_percent), settings.require_watch_to_complete


@router.post("/lessons/{lesson_id:uuid}/progress", status_code=204)
async def heartbeat(
    lesson_id: uuid.UUID,
    body: Heartbeat,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    position = body.position_seconds + 0.0
    target = (
        await session.execute(
            select(Lesson.duration_seconds, Enrollment.id)
            .join(
                Enrollment,
                and_(Enrollment.course_id == Lesson.course_id, Enrollment.user_id == user.id),
            )
            .where(Lesson.id == lesson_id)
        )
    ).one_or_none()
    if target is None:
        raise not_enrolled()
    duration, enrollment_id = target
    if duration is not None and position > duration:
        raise HTTPException(
            400,
            f"positionSeconds {body.position_seconds:g} is past the end of the video "
            f"({duration:g} s)",
        )
    now = datetime.now(UTC)
    progress = await session.scalar(
        select(LessonProgress)
        .where(LessonProgress.enrollment_id == enrollment_id, LessonProgress.lesson_id == lesson_id)
        .with_for_update()
    )
    if progress is None:
        progress = LessonProgress(
            user_id=user.id,
            lesson_id=lesson_id,
            enrollment_id=enrollment_id,
            position_seconds=position,
            watched=[],
            watched_seconds=0.0,
            completed=False,
            last_heartbeat_at=now,
            updated_at=now,
        )
        session.add(progress)
    else:
        previous = progress.position_seconds
        if (
            progress.last_heartbeat_at is not None
            and position > previous
            and position - previous
            <= (now - progress.last_heartbeat_at).total_seconds() + SEEK_SLACK_SECONDS
        ):
            spans = merged([*progress.watched, Range(millis(previous), millis(position))])
            progress.watched = spans
            progress.watched_seconds = float(sum((s.upper - s.lower for s in spans), Decimal(0)))
        progress.position_seconds = position
        progress.last_heartbeat_at = now
        progress.updated_at = now
    completed, watched = progress.completed, progress.watched_seconds
    await session.commit()
    if not completed:
        threshold, _ = await watch_rule(session)
        if duration and watched >= duration * threshold / 100.0:
            await complete_lesson(session, settings, user, lesson_id)
    return Response(status_code=204)


@router.post("/lessons/{lesson_id:uuid}/complete")
async def complete(
    lesson_id: uuid.UUID, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> LessonCompletion:
    return await complete_lesson(session, settings, user, lesson_id)


async def complete_lesson(
    session: Any, settings: Settings, user: User, lesson_id: uuid.UUID
) -> LessonCompletion:
    threshold, required = await watch_rule(session)
    found = (
        await session.execute(
            select(Enrollment, Lesson)
            .join(Lesson, Lesson.course_id == Enrollment.course_id)
            .where(Lesson.id == lesson_id, Enrollment.user_id == user.id)
            .options(
                joinedload(Enrollment.course).joinedload(Course.creator),
                joinedload(Enrollment.user),
            )
            .with_for_update(of=Enrollment, key_share=False)
        )
    ).one_or_none()
    if found is None:
        raise not_enrolled()
    enrollment, lesson = found
    progress = await session.scalar(
        select(LessonProgress).where(
            LessonProgress.enrollment_id == enrollment.id, LessonProgress.lesson_id == lesson_id
        )
    )
    duration = lesson.duration_seconds
    lesson_done = progress is not None and progress.completed
    if required and lesson.video_version > 0 and not lesson_done and duration:
        watched = progress.watched_seconds if progress is not None else 0.0
        needed = duration * threshold / 100.0
        if watched < needed:
            left = math.ceil(needed - watched)
            raise HTTPException(
                409,
                f"watch {left} more second{'s' if left != 1 else ''} of this lesson's video "
                f"first: {watched / duration * 100:.1f}% of {duration:.0f} s watched, "
                f"{threshold:g}% needed",
            )
    now = datetime.now(UTC)
    if progress is None:
        progress = LessonProgress(
            user_id=user.id,
            lesson_id=lesson_id,
            enrollment_id=enrollment.id,
            watched=[],
            updated_at=now,
        )
        session.add(progress)
    progress.completed = True
    progress.completed_at = progress.completed_at or now
    progress.updated_at = now
    await session.flush()
    done = await session.scalar(
        select(func.count())
        .select_from(LessonProgress)
        .where(LessonProgress.enrollment_id == enrollment.id, LessonProgress.completed)
    )
    total = await session.scalar(
        select(func.count()).select_from(Lesson).where(Lesson.course_id == enrollment.course_id)
    )
    enrollment.progress = (Decimal(100 * min(done, total)) / Decimal(max(total, 1))).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    if not enrollment.completed and done >= total:
        enrollment.completed = True
        enrollment.completed_at = now
    certificate = None
    if enrollment.completed:
        certificate = await session.scalar(
            select(Certificate).where(Certificate.enrollment_id == enrollment.id)
        )
        if certificate is None:
            certificate = await issue_certificate(session, settings, enrollment)
            session.add(certificate)
    await session.commit()
    return LessonCompletion(
        lesson_id=lesson_id,
        completed=True,
        progress=float(enrollment.progress),
        course_completed=enrollment.completed,
        certificate=None if certificate is None else to_certificate(settings, certificate),
    )


async def issue_certificate(
    session: Any, settings: Settings, enrollment: Enrollment
) -> Certificate:
    course = enrollment.course
    status_list, status_index = status_position(
        await session.scalar(select(certificate_status_seq.next_value()))
    )
    certificate = Certificate(
        id=uuid.uuid4(),
        user_id=enrollment.user_id,
        course_id=course.id,
        enrollment_id=enrollment.id,
        serial_hash=secrets.token_hex(24),
        learner_name=enrollment.user.certificate_name,
        course_title=course.title,
        creator_name=course.creator.display_name,
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
        enrollment_id=enrollment.id,
        issued_at=certificate.issued_at,
        learner_name=certificate.learner_name,
        course_id=course.id,
        course_title=course.title,
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
