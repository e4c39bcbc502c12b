"""Publishing transcription jobs. The job row is committed with the lesson first; publishing
happens after commit and may fail (NATS down, the process dying right then): the row stays
QUEUED with no published_at, and the worker's sweeper publishes it later. Nothing is lost."""

from __future__ import annotations

import asyncio
import logging
import uuid

import asyncpg
from taskiq import AsyncBroker
from taskiq.kicker import AsyncKicker

from lms.broker import BrokerConnection
from lms.db.queries import Conn
from lms.db.queries import events as events_sql
from lms.db.queries import lessons as sql
from lms.db.queries import transcription_jobs as jobs_sql
from lms.domain.errors import TooMany
from lms.domain.events.log import record_event

log = logging.getLogger("lms.jobs")

TRANSCRIBE_TASK = "lms.transcribe"
PUBLISH_TIMEOUT_SECONDS = 3.0


async def kick(broker: AsyncBroker, job_id: uuid.UUID) -> None:
    """Put one message for the job on the queue (the task is registered in workers only)."""
    kicker: AsyncKicker[[str], None] = AsyncKicker(
        task_name=TRANSCRIBE_TASK, broker=broker, labels={}
    )
    await kicker.kiq(str(job_id))


async def publish(nats: BrokerConnection, db: asyncpg.Pool, job_id: uuid.UUID) -> bool:
    """Hand the job to NATS; False (logged, left for the sweeper) when that is not possible now."""
    if not nats.connected or not nats.broker.client.is_connected:
        log.warning("NATS unavailable: job %s stays queued in PostgreSQL for the sweeper", job_id)
        return False
    try:
        await asyncio.wait_for(kick(nats.broker, job_id), PUBLISH_TIMEOUT_SECONDS)
        await sql.mark_published(db, job_id)
    except Exception as exc:
        log.warning("could not publish job %s (%s); the sweeper will", job_id, exc)
        return False
    return True


# The per-creator limit on waiting jobs (LMS_MAX_QUEUED_TRANSCRIPTIONS), so one account cannot
# fill the queue. When full, a caller is told to come back after about one short job.
QUEUE_RETRY_AFTER_SECONDS = 60


async def has_queue_room(
    conn: Conn, creator_id: uuid.UUID, lesson_id: uuid.UUID, limit: int
) -> bool:
    """Whether one more job (for `lesson_id`) fits in the creator's queue: fewer than `limit`
    QUEUED or PROCESSING for their other lessons. Inside the transaction that queues the job,
    the creator's queue stays locked until commit, so concurrent callers decide one by one."""
    await jobs_sql.lock_creator_queue(conn, creator_id)
    return await jobs_sql.waiting_for_creator(conn, creator_id, lesson_id) < limit


async def require_queue_room(
    conn: Conn, creator_id: uuid.UUID, lesson_id: uuid.UUID, limit: int
) -> None:
    """has_queue_room, or TooMany (429 with Retry-After)."""
    if not await has_queue_room(conn, creator_id, lesson_id, limit):
        raise TooMany(
            f"{limit} transcriptions are waiting already, the most one creator may have; "
            "try again once one is done",
            retry_after=QUEUE_RETRY_AFTER_SECONDS,
        )


async def record_transcript_failed(
    conn: asyncpg.Connection, job_id: uuid.UUID, lesson_id: uuid.UUID, version: int, error: str
) -> None:
    """transcript.failed, in the transaction that gave the job up."""
    await record_event(
        conn,
        "transcript.failed",
        {
            "lessonId": lesson_id,
            "courseId": await events_sql.course_of_lesson(conn, lesson_id),
            "jobId": job_id,
            "videoVersion": version,
            "error": error[:500],
        },
    )
