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
from lms.db.queries import lessons as sql

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
