"""SQL for the transcription job lifecycle in workers: claim under a lease, heartbeat, store the
result idempotently, fail or retry, and the sweeper's re-publishing.

Raw because the lease is a conditional UPDATE on status and lease expiry (only one worker wins a
job, even when JetStream redelivers it), and storing a result is a version-guarded transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from lms.db.queries import Conn

JOB = "id, lesson_id, video_version, status, attempts, error"


async def claim(conn: Conn, job_id: uuid.UUID, lease_seconds: float) -> asyncpg.Record | None:
    """Take the job if it is QUEUED, or PROCESSING by a worker whose lease ran out (it died)."""
    return await conn.fetchrow(
        f"""
        UPDATE transcription_jobs
        SET status = 'PROCESSING', attempts = attempts + 1, started_at = now(), updated_at = now(),
            error = NULL
        WHERE id = $1
          AND (status = 'QUEUED'
               OR (status = 'PROCESSING' AND updated_at < now() - make_interval(secs => $2)))
        RETURNING {JOB}
        """,
        job_id,
        lease_seconds,
    )


async def get(conn: Conn, job_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""SELECT {JOB}, extract(epoch FROM now() - updated_at)::float8 AS idle_seconds
            FROM transcription_jobs WHERE id = $1""",
        job_id,
    )


async def heartbeat(conn: Conn, job_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE transcription_jobs SET updated_at = now() WHERE id = $1 AND status = 'PROCESSING'",
        job_id,
    )


async def set_lesson_status(
    conn: Conn, lesson_id: uuid.UUID, video_version: int, status: str
) -> None:
    """Only for the video this job is about: a newer upload has a status of its own."""
    await conn.execute(
        """
        UPDATE lessons SET transcript_status = $3, updated_at = now()
        WHERE id = $1 AND video_version = $2
        """,
        lesson_id,
        video_version,
        status,
    )


async def record_duration(
    conn: Conn, lesson_id: uuid.UUID, video_version: int, duration_seconds: float
) -> None:
    """The length the worker measured, for the video this job is about, where none was known
    (an external URL, a Cloudinary notification without one): a measure taken when the video
    was attached stays."""
    await conn.execute(
        """
        UPDATE lessons SET duration_seconds = $3, updated_at = now()
        WHERE id = $1 AND video_version = $2 AND duration_seconds IS NULL
        """,
        lesson_id,
        video_version,
        duration_seconds,
    )


async def lock_lesson_version(conn: Conn, lesson_id: uuid.UUID) -> int | None:
    version: int | None = await conn.fetchval(
        "SELECT video_version FROM lessons WHERE id = $1 FOR UPDATE", lesson_id
    )
    return version


async def store_transcript(
    conn: Conn,
    *,
    lesson_id: uuid.UUID,
    video_version: int,
    language: str | None,
    duration_seconds: float,
    text: str,
    segments: Sequence[tuple[int, float, float, str, object]],
    speech_seconds: float | None = None,
    speech_coverage: float | None = None,
    warning: str | None = None,
) -> None:
    """Replace the lesson's transcript: one row per lesson, its segments rewritten, so a job run
    twice (a redelivery) still leaves exactly one transcript."""
    await conn.execute(
        """
        INSERT INTO transcripts (lesson_id, video_version, language, duration_seconds, text,
                                 speech_seconds, speech_coverage, warning)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (lesson_id) DO UPDATE
            SET video_version = EXCLUDED.video_version, language = EXCLUDED.language,
                duration_seconds = EXCLUDED.duration_seconds, text = EXCLUDED.text,
                speech_seconds = EXCLUDED.speech_seconds,
                speech_coverage = EXCLUDED.speech_coverage, warning = EXCLUDED.warning,
                created_at = now()
        """,
        lesson_id,
        video_version,
        language,
        duration_seconds,
        text,
        speech_seconds,
        speech_coverage,
        warning,
    )
    await conn.execute("DELETE FROM transcript_segments WHERE lesson_id = $1", lesson_id)
    await conn.executemany(
        """
        INSERT INTO transcript_segments (lesson_id, seq, start_seconds, end_seconds, text, words)
        VALUES ($1, $2, $3, $4, $5, $6)
        """,
        [(lesson_id, *segment) for segment in segments],
    )
    await conn.execute(
        """
        UPDATE lessons SET transcript_status = 'DONE', updated_at = now(),
               duration_seconds = coalesce(duration_seconds, $2)
        WHERE id = $1
        """,
        lesson_id,
        duration_seconds,
    )


async def finish(conn: Conn, job_id: uuid.UUID, status: str, error: str | None) -> None:
    await conn.execute(
        """
        UPDATE transcription_jobs
        SET status = $2, error = $3, finished_at = now(), updated_at = now()
        WHERE id = $1
        """,
        job_id,
        status,
        error[:4000] if error else None,
    )


async def retry_later(conn: Conn, job_id: uuid.UUID, error: str) -> None:
    """Back to QUEUED and unpublished: the sweeper publishes it again after its pause."""
    await conn.execute(
        """
        UPDATE transcription_jobs SET status = 'QUEUED', error = $2, published_at = NULL,
               updated_at = now()
        WHERE id = $1
        """,
        job_id,
        error[:4000],
    )


async def due_for_publishing(
    conn: Conn, *, quiet_seconds: float, republish_after_seconds: float, limit: int = 100
) -> list[asyncpg.Record]:
    """QUEUED jobs never published (NATS was down, the API died before publishing, a retry) or
    published long ago and still waiting (the message was lost), claimed for this sweeper by
    stamping published_at in the same statement (SKIP LOCKED: sweepers do not collide)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        UPDATE transcription_jobs j SET published_at = now()
        FROM (
            SELECT id FROM transcription_jobs
            WHERE status = 'QUEUED' AND updated_at < now() - make_interval(secs => $1)
              AND (published_at IS NULL OR published_at < now() - make_interval(secs => $2))
            ORDER BY created_at
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ) due
        WHERE j.id = due.id
        RETURNING j.id
        """,
        quiet_seconds,
        republish_after_seconds,
        limit,
    )
    return rows


async def abandoned(conn: Conn, *, stale_seconds: float, limit: int = 100) -> list[asyncpg.Record]:
    """PROCESSING jobs whose worker stopped heartbeating long ago (it died, and JetStream gave up
    or lost the message)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        SELECT {JOB} FROM transcription_jobs
        WHERE status = 'PROCESSING' AND updated_at < now() - make_interval(secs => $1)
        ORDER BY updated_at LIMIT $2
        FOR UPDATE SKIP LOCKED
        """,
        stale_seconds,
        limit,
    )
    return rows


async def counts_by_status(conn: Conn) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM transcription_jobs GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


# Serializes the queueing of one creator's jobs until the transaction ends, so concurrent
# uploads cannot both count the last free place in the creator's queue.
LOCK_CREATOR_QUEUE = (
    "SELECT pg_advisory_xact_lock("
    "hashtextextended('lms.transcription_queue:' || $1::uuid::text, 0))"
)


async def lock_creator_queue(conn: Conn, creator_id: uuid.UUID) -> None:
    await conn.execute(LOCK_CREATOR_QUEUE, creator_id)


async def waiting_for_creator(conn: Conn, creator_id: uuid.UUID, except_lesson: uuid.UUID) -> int:
    """Jobs QUEUED or PROCESSING for the creator's lessons other than `except_lesson` (the one
    being queued: queueing it again does not add a job). Walks the partial index of waiting
    jobs, which stays as small as the queue."""
    n: int = await conn.fetchval(
        """
        SELECT count(*)
        FROM transcription_jobs j
        JOIN lessons l ON l.id = j.lesson_id
        JOIN courses c ON c.id = l.course_id
        WHERE j.status IN ('QUEUED', 'PROCESSING') AND c.creator_id = $1 AND j.lesson_id <> $2
        """,
        creator_id,
        except_lesson,
    )
    return n
