"""Lessons with stored videos and their job rows, as the API leaves them, for worker tests."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from lms.settings import Settings
from tests.conftest import TestUser

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SPEECH = FIXTURES / "speech.mp4"


@dataclass(frozen=True)
class QueuedLesson:
    course_id: uuid.UUID
    lesson_id: uuid.UUID
    job_id: uuid.UUID
    key: str


async def queued_lesson(
    db: asyncpg.Pool,
    settings: Settings,
    owner: TestUser,
    media: Path = SPEECH,
    *,
    copy: bool = True,
) -> QueuedLesson:
    """A DRAFT course with one lesson whose local video is `media`, and its QUEUED job."""
    course_id = await db.fetchval(
        "INSERT INTO courses (creator_id, title, price) VALUES ($1, 'Speech', 0) RETURNING id",
        owner.id,
    )
    lesson_id = uuid.uuid4()
    key = f"lessons/{lesson_id}/v1{media.suffix}"
    if copy:
        target = settings.media_dir / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(media, target)
    await db.execute(
        """
        INSERT INTO lessons (id, course_id, title, position, video_url, video_provider, video_key,
                             video_version, transcript_status)
        VALUES ($1, $2, 'Spoken', 1, $3, 'local', $3, 1, 'QUEUED')
        """,
        lesson_id,
        course_id,
        key,
    )
    await db.execute("UPDATE courses SET lesson_count = 1 WHERE id = $1", course_id)
    job_id = await db.fetchval(
        "INSERT INTO transcription_jobs (lesson_id, video_version) VALUES ($1, 1) RETURNING id",
        lesson_id,
    )
    return QueuedLesson(course_id, lesson_id, job_id, key)


async def external_lesson(db: asyncpg.Pool, owner: TestUser, url: str) -> QueuedLesson:
    """A DRAFT course with one lesson whose video is the external `url`, and its QUEUED job: what
    POST /courses/:id/lessons leaves behind (written directly, so that URLs the API refuses at
    once still reach the worker, as they would through an older API or a direct write)."""
    course_id = await db.fetchval(
        "INSERT INTO courses (creator_id, title, price) VALUES ($1, 'Linked', 0) RETURNING id",
        owner.id,
    )
    lesson_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO lessons (id, course_id, title, position, video_url, video_provider,
                             video_version, transcript_status)
        VALUES ($1, $2, 'Linked', 1, $3, 'external', 1, 'QUEUED')
        """,
        lesson_id,
        course_id,
        url,
    )
    await db.execute("UPDATE courses SET lesson_count = 1 WHERE id = $1", course_id)
    job_id = await db.fetchval(
        "INSERT INTO transcription_jobs (lesson_id, video_version) VALUES ($1, 1) RETURNING id",
        lesson_id,
    )
    return QueuedLesson(course_id, lesson_id, job_id, url)
