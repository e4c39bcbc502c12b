"""Reading transcripts: a lesson's transcript and captions, and search across a course's lessons."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Literal

import asyncpg

from lms.db.queries import transcripts as sql
from lms.db.tables import TranscriptStatus
from lms.domain.auth.authentication import Principal
from lms.domain.courses.access import visible_course
from lms.domain.courses.lessons import lesson_in_visible_course, may_watch
from lms.domain.errors import Conflict, Forbidden, Invalid
from lms.domain.transcripts.captions import to_srt, to_webvtt
from lms.domain.transcripts.schemas import SearchHit, SearchResults, Segment, Transcript

# Who may read: an enrolled learner, the course's creator and admins (`may_watch`), as for the
# video. A course hidden from the caller is 404, as for the lesson itself; a visible one the caller
# may not watch is 403. Only a finished transcript of the lesson's present video is shown: when the
# lesson says DONE but the transcript on file was made from an older video (or is missing), the
# answer is status NONE ("no transcript of this video") rather than DONE with no words.

CaptionFormat = Literal["vtt", "srt"]
MEDIA_TYPES: dict[CaptionFormat, str] = {
    # Litestar appends "; charset=utf-8" to text/* types itself.
    "vtt": "text/vtt",
    "srt": "application/x-subrip; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Captions:
    body: str
    filename: str
    media_type: str


async def get_transcript(
    db: asyncpg.Pool, principal: Principal, lesson_id: uuid.UUID
) -> Transcript:
    async with db.acquire() as conn, _snapshot(conn):
        lesson, transcript = await _watchable_transcript(conn, principal, lesson_id)
        if transcript is None:
            status = lesson["transcript_status"]
            return Transcript(
                status=TranscriptStatus.NONE.value if status == TranscriptStatus.DONE else status,
                language=None,
                text="",
                duration_seconds=None,
                segments=[],
                speech_coverage=None,
                warning=None,
            )
        segments = await sql.segments(conn, lesson_id)
    return Transcript(
        status=TranscriptStatus.DONE.value,
        language=transcript["language"],
        text=transcript["text"],
        duration_seconds=transcript["duration_seconds"],
        segments=[_segment(row) for row in segments],
        speech_coverage=transcript["speech_coverage"],
        warning=transcript["warning"],
    )


async def get_captions(
    db: asyncpg.Pool, principal: Principal, lesson_id: uuid.UUID, fmt: CaptionFormat
) -> Captions:
    async with db.acquire() as conn, _snapshot(conn):
        lesson, transcript = await _watchable_transcript(conn, principal, lesson_id)
        if transcript is None:
            status = lesson["transcript_status"]
            older = ", of an older video" if status == "DONE" else ""
            raise Conflict(
                "captions are made from the transcript, which is not ready for this lesson's "
                f"video (transcriptStatus {status}{older})"
            )
        segments = [_segment(row) for row in await sql.segments(conn, lesson_id)]
    body = to_webvtt(segments) if fmt == "vtt" else to_srt(segments)
    return Captions(body, f"{slug(lesson['title'])}.{fmt}", MEDIA_TYPES[fmt])


async def search_course(
    db: asyncpg.Pool, principal: Principal, course_id: uuid.UUID, q: str
) -> SearchResults:
    # Control characters are never words, and PostgreSQL text cannot hold a NUL at all.
    q = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in q).strip()
    if not q:
        raise Invalid("q must contain at least one word")
    async with db.acquire() as conn:
        course = await visible_course(conn, course_id, principal)
        if not await may_watch(conn, principal, course):
            raise Forbidden(
                "transcripts are for enrolled learners, the course's creator and admins"
            )
        rows = await sql.search_in_course(conn, course_id, q)
    return SearchResults(items=[_hit(row) for row in rows])


def slug(title: str, max_length: int = 80) -> str:
    """A file name from a title: ASCII letters and digits joined by '-', never empty."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    words = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return words[:max_length].rstrip("-") or "captions"


def _snapshot(conn: asyncpg.Connection) -> asyncpg.transaction.Transaction:
    # The lesson, its transcript and its segments are read in one snapshot, so a worker
    # replacing the transcript meanwhile cannot pair one version's text with another's segments.
    return conn.transaction(isolation="repeatable_read", readonly=True)


async def _watchable_transcript(
    conn: asyncpg.Connection, principal: Principal, lesson_id: uuid.UUID
) -> tuple[asyncpg.Record, asyncpg.Record | None]:
    """(lesson, its finished transcript of the present video or None); 404/403 for those who
    may not see the lesson or watch it."""
    lesson, course = await lesson_in_visible_course(conn, principal, lesson_id)
    if not await may_watch(conn, principal, course):
        raise Forbidden("the transcript is for enrolled learners, the course's creator and admins")
    if lesson["transcript_status"] != TranscriptStatus.DONE:
        return lesson, None
    return lesson, await sql.current_transcript(conn, lesson_id, lesson["video_version"])


def _hit(row: asyncpg.Record) -> SearchHit:
    return SearchHit(
        lesson_id=row["lesson_id"],
        lesson_title=row["lesson_title"],
        start=row["start_seconds"],
        end=row["end_seconds"],
        text=row["text"].strip(),
    )


def _segment(row: asyncpg.Record) -> Segment:
    return Segment(start=row["start_seconds"], end=row["end_seconds"], text=row["text"].strip())
