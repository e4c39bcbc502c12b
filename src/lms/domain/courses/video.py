"""Lesson videos: the server-side upload (streamed to disk, checked by its bytes, stored, then the
lesson, its video and its transcription job committed together), and Cloudinary's
direct-from-browser path (a signed upload, then a signed notification that attaches the video).

Limits: uploads in flight per user (upload_slots), transcriptions waiting per creator (checked
before a byte of the body is read, and again, under the creator's queue lock, in the transaction
that queues the job). A video is attached only while its course is a DRAFT: what an admin reviews
and learners watch cannot be swapped afterwards.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from pathlib import Path, PurePosixPath

import asyncpg

from lms.context import AppContext
from lms.db.queries import Conn
from lms.db.queries import cloudinary_notifications as notifications_sql
from lms.db.queries import courses as courses_sql
from lms.db.queries import lessons as sql
from lms.db.tables import CourseStatus, TranscriptStatus
from lms.domain.auth.authentication import Principal
from lms.domain.courses.access import require_draft, require_owner, visible_course
from lms.domain.courses.authoring import valid_title
from lms.domain.courses.lessons import to_lesson
from lms.domain.courses.schemas import Lesson, UploadSignature
from lms.domain.courses.upload_slots import upload_slot
from lms.domain.errors import (
    Conflict,
    Invalid,
    Unauthenticated,
    UnsupportedMedia,
    UpstreamFailed,
)
from lms.domain.files import ReceivedUpload
from lms.domain.transcripts.jobs import has_queue_room, require_queue_room
from lms.integrations.cloudinary import (
    DELIVERY_TYPE,
    NOTIFICATION_CLOCK_SKEW,
    NOTIFICATION_MAX_AGE,
    CloudinaryVideoStorage,
)
from lms.integrations.media import NotAVideo, VideoInfo, probe_video_async
from lms.integrations.storage import MEDIA_TYPES, StorageError, StoredVideo
from lms.observability.logs import request_id_var

log = logging.getLogger("lms.video")

MAX_DESCRIPTION = 20_000
# Cloudinary public ids we hand out: the lesson id and the video version it will become.
_PUBLIC_ID = re.compile(r"^lessons/([0-9a-f-]{36})/v(\d+)$")


def _extension(info: VideoInfo, filename: str | None) -> str:
    """A file extension for the stored key: the client's when it names a video type we know,
    else one from the container PyAV found."""
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix in MEDIA_TYPES and MEDIA_TYPES[suffix].startswith("video/"):
        return suffix
    container = info.container.split(",")
    for name, ext in (
        ("mp4", ".mp4"),
        ("webm", ".webm"),
        ("matroska", ".mkv"),
        ("avi", ".avi"),
        ("mpegts", ".ts"),
    ):
        if name in container:
            return ext
    return ".mp4"


def upload_dir(ctx: AppContext) -> Path:
    """Where uploads are streamed to: on the media file system, so storing one is a rename."""
    return ctx.settings.data_dir / "tmp" / "uploads"


async def upload_limit(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, course_id: uuid.UUID
) -> int:
    """The most bytes this caller may upload as a lesson of the course now: checked before a
    byte of a (possibly huge) body is read, so a caller who may not add lessons (or whose
    transcription queue is full) sends none."""
    async with db.acquire() as conn:
        course = await visible_course(conn, course_id, principal)
        require_owner(principal, course)
        require_draft(course)
        # A new lesson has no jobs yet: any id that is no lesson's stands for it.
        await require_queue_room(
            conn, course["creator_id"], uuid.uuid4(), ctx.settings.max_queued_transcriptions
        )
    return (await ctx.system.get()).max_upload_bytes


async def add_uploaded_lesson(
    db: asyncpg.Pool,
    ctx: AppContext,
    principal: Principal,
    course_id: uuid.UUID,
    upload: ReceivedUpload,
) -> Lesson:
    """A new lesson from an uploaded form (title, description?, file): the file must be a video;
    it is stored, and the lesson and its transcription job are committed together. The upload's
    temp file is consumed either way."""
    if ctx.storage is None:
        raise RuntimeError("create_app sets up the video storage")
    stored: StoredVideo | None = None
    try:
        title = valid_title(upload.fields.get("title", ""))
        description = upload.fields.get("description", "").strip()
        if len(description) > MAX_DESCRIPTION:
            raise Invalid(f"description must be at most {MAX_DESCRIPTION} characters")
        if upload.path is None or upload.size == 0:
            raise Invalid("a video file is required in the form field 'file'")
        try:
            info = await probe_video_async(upload.path)
        except NotAVideo as exc:
            raise UnsupportedMedia(f"not a video: {exc.reason}") from None
        lesson_id = uuid.uuid4()
        try:
            stored = await ctx.storage.save(
                upload.path, key=f"lessons/{lesson_id}/v1{_extension(info, upload.filename)}"
            )
        except StorageError as exc:
            log.error("video storage failed: %s", exc)
            raise UpstreamFailed("video storage is unavailable; try again") from None
        async with db.acquire() as conn, conn.transaction():
            course = await visible_course(conn, course_id, principal, lock=True)
            require_owner(principal, course)
            require_draft(course)  # it may have been submitted while the video was uploading
            # Other uploads may have filled the queue meanwhile; this one decides under the lock.
            await require_queue_room(
                conn, course["creator_id"], lesson_id, ctx.settings.max_queued_transcriptions
            )
            row = await sql.insert_at(
                conn,
                lesson_id=lesson_id,
                course_id=course_id,
                position=course["lesson_count"] + 1,
                title=title,
                description=description,
                video_url=stored.url,
                video_provider=stored.provider,
                video_key=stored.key,
                video_version=1,
                duration_seconds=info.duration_seconds,
                transcript_status=TranscriptStatus.QUEUED.value,
            )
            job_id = await sql.queue_transcription(conn, lesson_id, 1, request_id_var.get())
    except BaseException:
        # Nothing half-made: a stored video whose lesson did not commit is removed again.
        if stored is not None:
            await ctx.delete_videos([stored.key])
        raise
    finally:
        upload.discard()
    await ctx.publish_job(job_id)
    return to_lesson(ctx, row, with_video=True)


def _cloudinary(ctx: AppContext) -> CloudinaryVideoStorage:
    if not isinstance(ctx.storage, CloudinaryVideoStorage):
        raise Conflict("direct uploads need Cloudinary: CLOUDINARY_URL is not configured")
    return ctx.storage


async def upload_signature(
    db: asyncpg.Pool, ctx: AppContext, principal: Principal, course_id: uuid.UUID, title: str
) -> UploadSignature:
    """Create the lesson (no video yet) and sign a browser upload that will become its video."""
    storage = _cloudinary(ctx)
    title = valid_title(title)
    async with db.acquire() as conn, conn.transaction():
        course = await visible_course(conn, course_id, principal, lock=True)
        require_owner(principal, course)
        require_draft(course)
        lesson_id = uuid.uuid4()
        # Refused now rather than after the upload; should the queue fill meanwhile, the video
        # is still attached, untranscribed (cloudinary_notification).
        await require_queue_room(
            conn, course["creator_id"], lesson_id, ctx.settings.max_queued_transcriptions
        )
        await sql.insert_at(
            conn,
            lesson_id=lesson_id,
            course_id=course_id,
            position=course["lesson_count"] + 1,
            title=title,
            description="",
            video_url=None,
            video_provider=None,
            video_key=None,
            video_version=0,
            duration_seconds=None,
            transcript_status=TranscriptStatus.NONE.value,
        )
    direct = storage.direct_upload_params(
        f"lessons/{lesson_id}/v1",
        notification_url=f"{ctx.settings.base_url}/webhooks/cloudinary",
        context={"lesson_id": str(lesson_id)},
    )
    return UploadSignature(lesson_id=lesson_id, upload_url=direct.upload_url, params=direct.params)


async def cloudinary_notification(
    db: asyncpg.Pool, ctx: AppContext, body: bytes, timestamp: str | None, signature: str | None
) -> str:
    """Attach an uploaded video to its lesson and queue transcription, while the course is a
    DRAFT; later, the video is deleted and the answer is 409. A notification is acted on once
    (a replay changes nothing), and only within minutes of its timestamp. Returns what was done
    (for the log)."""
    storage = _cloudinary(ctx)
    if (
        not timestamp
        or not signature
        or not storage.verify_notification(body, timestamp, signature)
    ):
        raise Unauthenticated("bad notification signature")
    try:
        note = json.loads(body)
    except ValueError:
        raise Invalid("notification body is not JSON") from None
    if not isinstance(note, dict) or note.get("notification_type") not in ("upload", None):
        return "ignored: not an upload"
    match = _PUBLIC_ID.match(str(note.get("public_id", "")))
    if match is None or note.get("resource_type", "video") != "video":
        return "ignored: not one of our lesson videos"
    if note.get("type") != DELIVERY_TYPE:
        # Uploaded with parameters signed before delivery was authenticated: a public video is
        # never attached (nor deleted: a lesson may hold it from before).
        return "ignored: not an authenticated upload"
    stored = storage.stored_video(note)
    lesson_id, version = uuid.UUID(match.group(1)), int(match.group(2))
    duration = note.get("duration")
    refusal: Conflict | None = None
    job_id: uuid.UUID | None = None
    async with db.acquire() as conn, conn.transaction():
        keep = NOTIFICATION_MAX_AGE + NOTIFICATION_CLOCK_SKEW
        if not await notifications_sql.record(conn, signature, int(timestamp), keep_seconds=keep):
            return "ignored: already processed"
        lesson, course = await _lesson_and_course(conn, lesson_id)
        if lesson is None or course is None:
            pass  # the lesson was deleted while the video uploaded
        elif lesson["video_version"] >= version:
            return "already attached"  # and nothing is deleted: it may be the attached video
        elif course["status"] != CourseStatus.DRAFT:
            refusal = Conflict(
                f"the course is {course['status']}: a video is attached only while it is a DRAFT"
            )
        else:
            queue = await has_queue_room(
                conn, course["creator_id"], lesson_id, ctx.settings.max_queued_transcriptions
            )
            await sql.update_fields(
                conn,
                lesson_id,
                {
                    "video_url": stored.url,
                    "video_provider": "cloudinary",
                    "video_key": stored.key,
                    "video_version": version,
                    "transcript_status": (
                        TranscriptStatus.QUEUED if queue else TranscriptStatus.NONE
                    ).value,
                    # Measured by Cloudinary; when it says nothing usable, the worker measures
                    # the file it fetches for transcription.
                    "duration_seconds": _notified_duration(duration),
                },
            )
            if queue:
                job_id = await sql.queue_transcription(
                    conn, lesson_id, version, request_id_var.get()
                )
    if lesson is None or course is None or refusal is not None:
        # After commit (the notification is recorded as processed): nothing refers to it.
        await ctx.delete_videos([stored.key])
        if refusal is not None:
            raise refusal
        return "ignored: the lesson is gone"
    if job_id is None:
        log.warning("lesson %s: video attached, transcription not queued (queue full)", lesson_id)
        return (
            "attached; transcription not queued: the creator's transcription queue is full "
            "(POST /lessons/:id/transcribe queues it later)"
        )
    await ctx.publish_job(job_id)
    return "attached"


def _notified_duration(value: object) -> float | None:
    """The video's length in a notification: a positive, finite number of seconds, else
    unknown."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds > 0 else None


async def _lesson_and_course(
    conn: Conn, lesson_id: uuid.UUID
) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
    """The lesson, locked, and its course, locked first (the order every lesson change takes),
    so a notification and a submit or lesson edit queue up rather than interleave."""
    found = await sql.by_id(conn, lesson_id)
    if found is None:
        return None, None
    course = await courses_sql.meta(conn, found["course_id"], lock=True)
    lesson = await sql.by_id(conn, lesson_id, lock=True)  # re-read under the course lock
    return lesson, course


__all__ = [
    "add_uploaded_lesson",
    "cloudinary_notification",
    "upload_dir",
    "upload_limit",
    "upload_signature",
    "upload_slot",
]
