"""SQL that reads transcripts (the worker writes them): one lesson's, and search within a course.

Raw because search is full-text (websearch_to_tsquery over the segments' GIN-indexed vectors)
within the current transcript of each lesson, which Piccolo's builder has no words for."""

from __future__ import annotations

import uuid

import asyncpg

from lms.db.queries import Conn

# A transcript is current when it was made from the lesson's present video
# (transcripts.video_version = lessons.video_version); an older one is never served or searched,
# whatever the lesson's status.
SEARCH_LIMIT = 100


async def current_transcript(
    conn: Conn, lesson_id: uuid.UUID, video_version: int
) -> asyncpg.Record | None:
    """The transcript of this video version of the lesson, or None (none yet, or a stale one)."""
    return await conn.fetchrow(
        """
        SELECT language, duration_seconds, text, speech_coverage, warning
        FROM transcripts WHERE lesson_id = $1 AND video_version = $2
        """,
        lesson_id,
        video_version,
    )


async def segments(conn: Conn, lesson_id: uuid.UUID) -> list[asyncpg.Record]:
    """The lesson's segments in spoken order (the (lesson_id, seq) unique index walks them)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        SELECT start_seconds, end_seconds, text
        FROM transcript_segments WHERE lesson_id = $1 ORDER BY seq
        """,
        lesson_id,
    )
    return rows


# The lessons whose transcripts may be searched: the course's, DONE, with the transcript of their
# present video (what GET /lessons/:id/transcript would show). Segments are then restricted to
# them twice over: by the join, so the planner may walk a lesson's segments by (lesson_id, seq) when
# a word is common, and by `lesson_id = ANY(...)`, so that for a selective word it can start from
# the GIN index (transcript_segments_search_idx), alone or ANDed with the lesson_id index, instead
# of reading every segment of the course.
SEARCH_IN_COURSE = """
    WITH searchable AS MATERIALIZED (
        SELECT l.id, l.title, l.position
        FROM lessons l
        JOIN transcripts t ON t.lesson_id = l.id AND t.video_version = l.video_version
        WHERE l.course_id = $1 AND l.transcript_status = 'DONE'
    )
    SELECT c.id AS lesson_id, c.title AS lesson_title, s.start_seconds, s.end_seconds, s.text
    FROM transcript_segments s
    JOIN searchable c ON c.id = s.lesson_id
    WHERE s.lesson_id = ANY (ARRAY(SELECT id FROM searchable))
      AND s.search_vector @@ websearch_to_tsquery('english', $2)
    ORDER BY c.position, s.start_seconds, s.seq
    LIMIT $3
"""


async def search_in_course(
    conn: Conn, course_id: uuid.UUID, q: str, limit: int = SEARCH_LIMIT
) -> list[asyncpg.Record]:
    """Segments of the course's lessons whose words match `q` (websearch syntax, English
    stemming), by lesson order then time."""
    rows: list[asyncpg.Record] = await conn.fetch(SEARCH_IN_COURSE, course_id, q, limit)
    return rows
