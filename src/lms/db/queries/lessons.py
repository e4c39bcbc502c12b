"""SQL for lessons. Callers hold the course row lock (courses.meta(lock=True)), so positions stay
dense 1..n and lesson_count stays true under concurrent edits of one course.

Raw because they run on that locked connection, and say what the builder cannot: a reorder is one
UPDATE from unnest() WITH ORDINALITY, a move shifts the positions after it in one statement."""

from __future__ import annotations

import uuid

import asyncpg

from lms.db.queries import Conn
from lms.invariants import present

COLUMNS = """id, course_id, title, description, position, video_url, video_provider, video_key,
    video_version, duration_seconds, transcript_status, created_at, updated_at"""


async def by_id(conn: Conn, lesson_id: uuid.UUID, *, lock: bool = False) -> asyncpg.Record | None:
    suffix = " FOR UPDATE" if lock else ""
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM lessons WHERE id = $1{suffix}", lesson_id)


async def of_course(conn: Conn, course_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {COLUMNS} FROM lessons WHERE course_id = $1 ORDER BY position", course_id
    )
    return rows


async def count(conn: Conn, course_id: uuid.UUID) -> int:
    n: int = await conn.fetchval("SELECT count(*) FROM lessons WHERE course_id = $1", course_id)
    return n


async def insert_at(
    conn: Conn,
    *,
    lesson_id: uuid.UUID,
    course_id: uuid.UUID,
    position: int,
    title: str,
    description: str,
    video_url: str | None,
    video_provider: str | None,
    video_key: str | None,
    video_version: int,
    duration_seconds: float | None,
    transcript_status: str,
) -> asyncpg.Record:
    """Insert at `position` (1..n+1), shifting the ones at or after it down by one."""
    await _shift(conn, course_id, from_position=position, by=1)
    row = await conn.fetchrow(
        f"""
        INSERT INTO lessons (id, course_id, position, title, description, video_url,
                             video_provider, video_key, video_version, duration_seconds,
                             transcript_status)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        RETURNING {COLUMNS}
        """,
        lesson_id,
        course_id,
        position,
        title,
        description,
        video_url,
        video_provider,
        video_key,
        video_version,
        duration_seconds,
        transcript_status,
    )
    await _recount(conn, course_id)
    return present(row, "INSERT ... RETURNING returns the row")


async def _shift(conn: Conn, course_id: uuid.UUID, *, from_position: int, by: int) -> None:
    # The unique (course_id, position) is DEFERRABLE: checked at commit, so a shift may pass
    # through duplicates on its way.
    await conn.execute("SET CONSTRAINTS lessons_course_position_key DEFERRED")
    await conn.execute(
        "UPDATE lessons SET position = position + $3 WHERE course_id = $1 AND position >= $2",
        course_id,
        from_position,
        by,
    )


async def _recount(conn: Conn, course_id: uuid.UUID) -> None:
    await conn.execute(
        """
        UPDATE courses SET lesson_count = (SELECT count(*) FROM lessons WHERE course_id = $1),
               updated_at = now()
        WHERE id = $1
        """,
        course_id,
    )


async def update_fields(conn: Conn, lesson_id: uuid.UUID, values: dict[str, object]) -> None:
    if not values:
        return
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(values, start=2))
    await conn.execute(
        f"UPDATE lessons SET {assignments}, updated_at = now() WHERE id = $1",
        lesson_id,
        *values.values(),
    )


async def move(conn: Conn, course_id: uuid.UUID, lesson_id: uuid.UUID, old: int, new: int) -> None:
    """Move one lesson from `old` to `new`, sliding the ones between by one place."""
    if old == new:
        return
    await conn.execute("SET CONSTRAINTS lessons_course_position_key DEFERRED")
    if new < old:
        await conn.execute(
            """UPDATE lessons SET position = position + 1
               WHERE course_id = $1 AND position >= $2 AND position < $3""",
            course_id,
            new,
            old,
        )
    else:
        await conn.execute(
            """UPDATE lessons SET position = position - 1
               WHERE course_id = $1 AND position > $2 AND position <= $3""",
            course_id,
            old,
            new,
        )
    await conn.execute(
        "UPDATE lessons SET position = $2, updated_at = now() WHERE id = $1", lesson_id, new
    )


async def reorder(conn: Conn, course_id: uuid.UUID, lesson_ids: list[uuid.UUID]) -> None:
    """Positions 1..n in the order of `lesson_ids` (every lesson of the course, checked by the
    caller)."""
    await conn.execute("SET CONSTRAINTS lessons_course_position_key DEFERRED")
    await conn.execute(
        """
        UPDATE lessons l SET position = o.position, updated_at = now()
        FROM unnest($2::uuid[]) WITH ORDINALITY AS o(id, position)
        WHERE l.id = o.id AND l.course_id = $1 AND l.position <> o.position
        """,
        course_id,
        lesson_ids,
    )


async def delete(conn: Conn, course_id: uuid.UUID, lesson_id: uuid.UUID, position: int) -> None:
    await conn.execute("DELETE FROM lessons WHERE id = $1", lesson_id)
    await _shift(conn, course_id, from_position=position + 1, by=-1)
    await _recount(conn, course_id)


async def is_enrolled(conn: Conn, user_id: uuid.UUID, course_id: uuid.UUID) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM enrollments WHERE user_id = $1 AND course_id = $2)",
        user_id,
        course_id,
    )
    return found


async def queue_transcription(
    conn: Conn, lesson_id: uuid.UUID, video_version: int, request_id: str | None
) -> uuid.UUID:
    """The job row for this video version (one per version: re-queueing reuses it)."""
    job_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO transcription_jobs (lesson_id, video_version, request_id)
        VALUES ($1, $2, $3)
        ON CONFLICT (lesson_id, video_version) DO UPDATE
            SET status = 'QUEUED', attempts = 0, error = NULL, finished_at = NULL,
                request_id = EXCLUDED.request_id, updated_at = now()
        RETURNING id
        """,
        lesson_id,
        video_version,
        request_id,
    )
    return job_id


async def mark_published(conn: Conn, job_id: uuid.UUID) -> None:
    await conn.execute("UPDATE transcription_jobs SET published_at = now() WHERE id = $1", job_id)
