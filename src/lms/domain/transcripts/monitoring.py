"""Queue gauges for /metrics: jobs by status from PostgreSQL and the JetStream backlog, read when
Prometheus scrapes (two cheap queries) rather than kept in step on every change."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from lms.broker import CONSUMER_NAME, BrokerConnection
from lms.db.queries import transcription_jobs as sql
from lms.db.tables import JobStatus
from lms.observability.metrics import JOBS_BY_STATUS, QUEUE_DEPTH

TIMEOUT_SECONDS = 1.0


async def refresh_queue_metrics(db: asyncpg.Pool, nats: BrokerConnection, stream: str) -> None:
    with contextlib.suppress(Exception):  # a scrape must not fail because one source is down
        counts = await asyncio.wait_for(sql.counts_by_status(db), TIMEOUT_SECONDS)
        for status in JobStatus:
            JOBS_BY_STATUS.labels(status.value).set(counts.get(status.value, 0))
    if not nats.connected:
        return
    with contextlib.suppress(Exception):  # no consumer until the first worker starts
        info = await asyncio.wait_for(
            nats.broker.client.jetstream().consumer_info(stream, CONSUMER_NAME), TIMEOUT_SECONDS
        )
        QUEUE_DEPTH.set(info.num_pending + info.num_ack_pending)
