"""Lessons: reading them (with the video only for those entitled to it), and the DRAFT-only
changes: create, edit, move, reorder, delete. Every change locks the course row first, so
concurrent edits of one course queue up and positions stay 1..n."""

from __future__ import annotations

import uuid

import asyncpg
from msgspec import UNSET

from lms.context import AppContext
from lms.db.queries import Conn
from lms.db.queries import lessons as sql
from lms.db.tables import TranscriptStatus
from lms.domain.auth.authentication import Principal
from lms.domain.courses.access import (
    can_manage,
    require_draft,
    require_manager,
    require_owner,
    visible_course,
)
from lms.domain.courses.authoring import valid_title, valid_url
from lms.domain.courses.schemas import Lesson, LessonCreate, LessonUpdate
from lms.domain.errors import Conflict, Invalid, NotFound
from lms.integrations.fetch_policy import FetchPolicy, FetchRefused
from lms.invariants import present
from lms.observability.logs import request_id_var


async def may_watch(conn: Conn, principal: Principal | None, course: asyncpg.Record) -> bool:
    """The video (and transcript) are for the owner, admins and enrolled learners."""
    if principal is None:
        return False
    return can_manage(principal, course) or await sql.is_enrolled(
        conn, principal.user_id, course["id"]
    )


def to_lesson(ctx: AppContext, row: asyncpg.Record, *, with_video: bool) -> Lesson:
    video_url = None
    if with_video and row["video_provider"] == "external":
        video_url = row["video_url"]
    elif with_video and row["video_key"] and ctx.storage is not None:
        video_url = ctx.storage.playback_url(row["video_key"])
    return Lesson(
        id=row["id"],
        title=row["title"],
        order=row["position"],
        duration_seconds=row["duration_seconds"],
        transcript_status=row["transcript_status"],
        description=row["description"],
        course_id=row["course_id"],
        video_url=video_url,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def list_lessons(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal | None, course_id: uuid.UUID
) -> list[Lesson]:
    async with db.acquire() as conn:
        course = await visible_course(conn, course_id, principal)
        watch = await may_watch(conn, principal, course)
        return [to_lesson(ctx, r, with_video=watch) for r in await sql.of_course(conn, course_id)]


async def lesson_in_visible_course(
    conn: Conn, principal: Principal | None, lesson_id: uuid.UUID, *, lock: bool = False
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """(lesson, course), or 404 when either is missing or the course is hidden from the caller."""
    lesson = await sql.by_id(conn, lesson_id)
    if lesson is None:
        raise NotFound("no such lesson")
    try:
        course = await visible_course(conn, lesson["course_id"], principal, lock=lock)
    except NotFound:
        raise NotFound("no such lesson") from None
    if lock:  # re-read under the course lock: it may have moved meanwhile
        lesson = await sql.by_id(conn, lesson_id)
        if lesson is None:
            raise NotFound("no such lesson")
    return lesson, course


async def get_lesson(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal | None, lesson_id: uuid.UUID
) -> Lesson:
    async with db.acquire() as conn:
        lesson, course = await lesson_in_visible_course(conn, principal, lesson_id)
        return to_lesson(ctx, lesson, with_video=await may_watch(conn, principal, course))


async def create_lesson(
    db: asyncpg.Pool,
    ctx: AppContext,
    principal: Principal,
    course_id: uuid.UUID,
    body: LessonCreate,
) -> Lesson:
    video_url = valid_video_url(ctx, body.video_url)
    async with db.acquire() as conn, conn.transaction():
        course = await visible_course(conn, course_id, principal, lock=True)
        require_owner(principal, course)
        require_draft(course)
        position = _insert_position(body.order, course["lesson_count"])
        lesson_id = uuid.uuid4()
        row = await sql.insert_at(
            conn,
            lesson_id=lesson_id,
            course_id=course_id,
            position=position,
            title=valid_title(body.title),
            description=body.description.strip(),
            video_url=video_url,
            video_provider="external" if video_url else None,
            video_key=None,
            video_version=1 if video_url else 0,
            duration_seconds=None,
            transcript_status=(
                TranscriptStatus.QUEUED if video_url else TranscriptStatus.NONE
            ).value,
        )
        job_id = (
            await sql.queue_transcription(conn, lesson_id, 1, request_id_var.get())
            if video_url
            else None
        )
    if job_id is not None:
        await ctx.publish_job(job_id)
    return to_lesson(ctx, row, with_video=True)


def valid_video_url(ctx: AppContext, value: str | None) -> str | None:
    """An http(s) URL the worker may fetch, as far as the URL alone tells (a literal private or
    loopback address is refused now, not after a failed job); the worker checks every address
    it actually connects to."""
    video_url = valid_url(value, "videoUrl")
    if video_url is not None:
        policy = FetchPolicy.from_entries(ctx.settings.video_fetch_allow)
        try:
            policy.check_url_early(video_url)
        except FetchRefused as exc:
            raise Invalid(f"videoUrl must be a public http(s) URL: {exc}") from None
    return video_url


def _insert_position(order: int | None, count: int) -> int:
    if order is None:
        return count + 1
    if not 1 <= order <= count + 1:
        raise Invalid(f"order must be between 1 and {count + 1}")
    return order


async def update_lesson(
    db: asyncpg.Pool,
    ctx: AppContext,
    principal: Principal,
    lesson_id: uuid.UUID,
    body: LessonUpdate,
) -> Lesson:
    values: dict[str, object] = {}
    if body.title is not UNSET:
        values["title"] = valid_title(body.title)
    if body.description is not UNSET:
        values["description"] = body.description.strip()
    if not values and body.order is UNSET:
        raise Invalid("give at least one of title, description, order")
    async with db.acquire() as conn, conn.transaction():
        lesson, course = await lesson_in_visible_course(conn, principal, lesson_id, lock=True)
        require_owner(principal, course)
        require_draft(course)
        await sql.update_fields(conn, lesson_id, values)
        if body.order is not UNSET:
            if not 1 <= body.order <= course["lesson_count"]:
                raise Invalid(f"order must be between 1 and {course['lesson_count']}")
            await sql.move(conn, course["id"], lesson_id, lesson["position"], body.order)
        row = await sql.by_id(conn, lesson_id)
    return to_lesson(ctx, present(row, "the lesson was locked and updated above"), with_video=True)


async def reorder_lessons(
    db: asyncpg.Pool,
    ctx: AppContext,
    principal: Principal,
    course_id: uuid.UUID,
    lesson_ids: list[uuid.UUID],
) -> list[Lesson]:
    async with db.acquire() as conn, conn.transaction():
        course = await visible_course(conn, course_id, principal, lock=True)
        require_owner(principal, course)
        require_draft(course, "reordered")
        current = {r["id"] for r in await sql.of_course(conn, course_id)}
        if len(lesson_ids) != len(set(lesson_ids)) or set(lesson_ids) != current:
            raise Invalid("lessonIds must list every lesson of the course exactly once")
        await sql.reorder(conn, course_id, lesson_ids)
        rows = await sql.of_course(conn, course_id)
    return [to_lesson(ctx, r, with_video=True) for r in rows]


async def delete_lesson(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, lesson_id: uuid.UUID
) -> None:
    async with db.acquire() as conn, conn.transaction():
        lesson, course = await lesson_in_visible_course(conn, principal, lesson_id, lock=True)
        require_manager(principal, course)
        require_draft(course)
        await sql.delete(conn, course["id"], lesson_id, lesson["position"])
    if lesson["video_key"] and lesson["video_provider"] != "external":
        await ctx.delete_videos([lesson["video_key"]])


async def requeue_transcription(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, lesson_id: uuid.UUID
) -> uuid.UUID:
    async with db.acquire() as conn, conn.transaction():
        lesson, course = await lesson_in_visible_course(conn, principal, lesson_id, lock=True)
        require_manager(principal, course)
        if not lesson["video_version"]:
            raise Conflict("the lesson has no video to transcribe")
        job_id = await sql.queue_transcription(
            conn, lesson_id, lesson["video_version"], request_id_var.get()
        )
        await sql.update_fields(
            conn, lesson_id, {"transcript_status": TranscriptStatus.QUEUED.value}
        )
    await ctx.publish_job(job_id)
    return job_id
