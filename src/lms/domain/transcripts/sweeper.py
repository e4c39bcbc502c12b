"""The worker's sweeper: whatever PostgreSQL says should be in the queue but may not be, it puts
there. QUEUED jobs that were never published (NATS was down when the API committed, the API died
between commit and publish, a failed attempt waiting to retry) or whose message got lost are
published again; PROCESSING jobs whose worker stopped heartbeating long ago are re-queued, or
failed once out of attempts. Every worker sweeps; SKIP LOCKED keeps them from doubling up, and a
job published twice is harmless (the claim is a lease)."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from lms.broker import JobsBroker
from lms.db.queries import transcription_jobs as sql
from lms.db.tables import JobStatus, TranscriptStatus
from lms.domain.transcripts.jobs import kick, record_transcript_failed
from lms.settings import Settings

log = logging.getLogger("lms.sweeper")

# A fresh job gets this long for the API's own publish; a failed one waits this long to retry.
QUIET_SECONDS = 5.0


async def sweep_once(db: asyncpg.Pool, settings: Settings, broker: JobsBroker) -> int:
    """One pass; the number of jobs (re)published."""
    lease = float(settings.jobs_ack_wait_seconds)
    # A message JetStream holds is redelivered within ack_wait x max_deliver; after that, or if
    # the stream lost it, only we can bring the job back.
    republish_after = lease * (settings.jobs_max_deliver + 1)
    async with db.acquire() as conn, conn.transaction():
        for job in await sql.abandoned(conn, stale_seconds=3 * lease):
            error = "the worker running it stopped (killed or lost) and did not come back"
            if job["attempts"] >= settings.jobs_max_deliver:
                await sql.finish(conn, job["id"], JobStatus.FAILED.value, error)
                await sql.set_lesson_status(
                    conn, job["lesson_id"], job["video_version"], TranscriptStatus.FAILED.value
                )
                await record_transcript_failed(
                    conn, job["id"], job["lesson_id"], job["video_version"], error
                )
            else:
                await sql.retry_later(conn, job["id"], error)
    async with db.acquire() as conn, conn.transaction():
        due = await sql.due_for_publishing(
            conn, quiet_seconds=QUIET_SECONDS, republish_after_seconds=republish_after
        )
        # Published inside the transaction that stamped them: if publishing fails, the stamps
        # roll back and the next pass tries again.
        for row in due:
            await kick(broker, row["id"])
    if due:
        log.info("sweeper published %d queued job(s)", len(due))
    return len(due)


async def sweep_forever(
    db: asyncpg.Pool, settings: Settings, broker: JobsBroker, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            await sweep_once(db, settings, broker)
        except Exception as exc:  # NATS or PostgreSQL away: the next pass retries
            log.warning("sweep failed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), settings.sweep_interval_seconds)
        except TimeoutError:
            continue
