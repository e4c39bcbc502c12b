"""Transcript test steps: courses with video lessons, transcripts written as the worker would."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import httpx

from tests.conftest import TestUser
from tests.integration.courses.helpers import new_course, new_lesson

Spoken = tuple[float, float, str]  # start, end, text
MakeUser = Callable[..., Awaitable[TestUser]]  # the make_user fixture


async def store_transcript(
    db: asyncpg.Pool,
    lesson_id: str | uuid.UUID,
    segments: Sequence[Spoken],
    *,
    language: str = "en",
    version: int | None = None,
    status: str = "DONE",
) -> None:
    """Replace the lesson's transcript; `version` defaults to the lesson's current video."""
    lid = uuid.UUID(str(lesson_id))
    async with db.acquire() as conn, conn.transaction():
        current = await conn.fetchval("SELECT video_version FROM lessons WHERE id = $1", lid)
        text = " ".join(t.strip() for _, _, t in segments)
        duration = max((end for _, end, _ in segments), default=0.0)
        await conn.execute(
            """
            INSERT INTO transcripts (lesson_id, video_version, language, duration_seconds, text)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (lesson_id) DO UPDATE SET video_version = EXCLUDED.video_version,
                language = EXCLUDED.language, duration_seconds = EXCLUDED.duration_seconds,
                text = EXCLUDED.text
            """,
            lid,
            current if version is None else version,
            language,
            duration,
            text,
        )
        await conn.execute("DELETE FROM transcript_segments WHERE lesson_id = $1", lid)
        await conn.executemany(
            """
            INSERT INTO transcript_segments
                (lesson_id, seq, start_seconds, end_seconds, text, words)
            VALUES ($1, $2, $3, $4, $5, '[]'::jsonb)
            """,
            # Backwards, and with whisper's leading space, so readers must order by seq and trim.
            [
                (lid, seq, start, end, f" {text}")
                for seq, (start, end, text) in reversed(list(enumerate(segments)))
            ],
        )
        await conn.execute("UPDATE lessons SET transcript_status = $2 WHERE id = $1", lid, status)


async def new_video_version(db: asyncpg.Pool, lesson_id: str | uuid.UUID) -> None:
    """What attaching a new video does: the version moves on and transcription is queued."""
    await db.execute(
        """UPDATE lessons SET video_version = video_version + 1, transcript_status = 'QUEUED'
           WHERE id = $1""",
        uuid.UUID(str(lesson_id)),
    )


async def enroll(db: asyncpg.Pool, user: TestUser, course_id: str) -> None:
    await db.execute(
        "INSERT INTO enrollments (user_id, course_id) VALUES ($1, $2)",
        user.id,
        uuid.UUID(course_id),
    )


async def course_with_videos(
    api: httpx.AsyncClient,
    owner: TestUser,
    titles: Sequence[str],
    *,
    publish_as: TestUser | None = None,
    **fields: Any,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A course whose lessons (in `titles` order) each have a video (version 1, QUEUED);
    published when `publish_as` (an admin) is given, else left a DRAFT."""
    course = await new_course(api, owner, **fields)
    lessons = [
        await new_lesson(
            api, owner, course["id"], title=title, videoUrl=f"https://videos.example.test/{i}.mp4"
        )
        for i, title in enumerate(titles)
    ]
    if publish_as is not None:
        submitted = await api.post(f"/courses/{course['id']}/submit", headers=owner.headers)
        assert submitted.status_code == 200, submitted.text
        published = await api.post(
            f"/admin/courses/{course['id']}/publish", headers=publish_as.headers
        )
        assert published.status_code == 200, published.text
    return course, lessons
