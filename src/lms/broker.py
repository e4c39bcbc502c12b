"""The taskiq broker over NATS JetStream, shared by the API (publishing) and workers (consuming).

Jobs live in one work-queue stream; workers share one durable pull consumer with explicit acks,
so each message goes to one worker and is redelivered (up to max_deliver) if that worker dies.
A taskiq middleware copies the request id of the HTTP request that queued a job into the job's
labels, and back into the log context of the worker that runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.errors import (
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import ServiceUnavailableError
from taskiq import AckableMessage, TaskiqMessage, TaskiqMiddleware, TaskiqResult
from taskiq_nats import PullBasedJetStreamBroker

from lms.observability.logs import request_id_var
from lms.settings import Settings

log = logging.getLogger("lms.broker")

CONSUMER_NAME = "lms-workers"
# A job not acked within ack_wait (LMS_JOBS_ACK_WAIT) is redelivered; long jobs keep it alive
# with in-progress acks every third of it. After max_deliver deliveries JetStream gives up.
ACK_WAIT_SECONDS = 60.0
JOB_RETENTION_SECONDS = 7 * 24 * 3600
# A pull that JetStream cannot serve right now: no consumer leader while a cluster elects one after
# losing a node (503, no responders), or the client between servers. The worker waits and pulls
# again, as it does while NATS is down; anything else still ends the worker.
UNAVAILABLE_FOR_NOW = (
    ServiceUnavailableError,
    NoRespondersError,
    ConnectionReconnectingError,
    StaleConnectionError,
    OutboundBufferLimitError,
)
PULL_RETRY_SECONDS = 1.0


class RequestIdMiddleware(TaskiqMiddleware):
    """Carry the HTTP request id into queued jobs and into the worker's log lines."""

    def pre_send(self, message: TaskiqMessage) -> TaskiqMessage:
        request_id = request_id_var.get()
        if request_id and "request_id" not in message.labels:
            message.labels["request_id"] = request_id
        return message

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        request_id = message.labels.get("request_id")
        request_id_var.set(str(request_id) if request_id else None)
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        request_id_var.set(None)


class JobsBroker(PullBasedJetStreamBroker):
    """PullBasedJetStreamBroker that only creates the consumer in worker processes (the API
    publishes and must not consume the jobs it queues), and that keeps every message it holds
    alive with in-progress acks until it is acked: a transcription may take far longer than
    ack_wait, yet must not be handed to a second worker while the first is still on it. If the
    worker dies, the heartbeats stop and JetStream redelivers after ack_wait."""

    async def _startup_consumer(self) -> None:
        if self.is_worker_process:
            await super()._startup_consumer()

    @property
    def ack_wait(self) -> float:
        config = self.consumer_config
        return (
            float(config.ack_wait) if config is not None and config.ack_wait else ACK_WAIT_SECONDS
        )

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        unavailable = False
        while True:
            try:
                messages = await self.consumer.fetch(
                    batch=self.pull_consume_batch, timeout=self.pull_consume_timeout
                )
            except NatsTimeoutError:
                continue
            except UNAVAILABLE_FOR_NOW as exc:
                if not unavailable:
                    log.warning("jobs consumer unavailable (%r); pulling again", exc)
                unavailable = True
                await asyncio.sleep(PULL_RETRY_SECONDS)
                continue
            if unavailable:
                log.info("jobs consumer available again")
                unavailable = False
            for message in messages:
                yield AckableMessage(data=message.data, ack=self._acked_with_heartbeat(message))

    def _acked_with_heartbeat(self, message: Msg) -> Callable[[], Awaitable[None]]:
        interval = self.ack_wait / 3

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await message.in_progress()
                except Exception as exc:  # NATS briefly away: the next beat may get through
                    log.warning("in-progress ack failed: %s", exc)

        beating = asyncio.create_task(heartbeat(), name="jobs-heartbeat")

        async def ack() -> None:
            beating.cancel()
            await message.ack()

        return ack


def jobs_subject(settings: Settings) -> str:
    return f"{settings.jobs_subject}.tasks"


def make_broker(settings: Settings, *, replicas: int | None = None) -> JobsBroker:
    """A broker for `settings`; the stream and consumer are created (or reused) at startup."""
    if not settings.nats_url:
        raise RuntimeError("nats_url must be resolved before the broker is built")
    subject = jobs_subject(settings)
    broker = JobsBroker(
        servers=[u.strip() for u in settings.nats_url.split(",")],
        subject=subject,
        stream_name=settings.jobs_stream,
        durable=CONSUMER_NAME,
        stream_config=StreamConfig(
            name=settings.jobs_stream,
            subjects=[f"{settings.jobs_subject}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            # 3 on a three-node JetStream cluster, so losing a node loses no job.
            num_replicas=replicas or settings.jobs_replicas,
            max_age=JOB_RETENTION_SECONDS,
        ),
        consumer_config=ConsumerConfig(
            durable_name=CONSUMER_NAME,
            filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=float(settings.jobs_ack_wait_seconds),
            max_deliver=settings.jobs_max_deliver,
        ),
        pull_consume_batch=1,
        pull_consume_timeout=5.0,
        # Keep reconnecting forever: a NATS restart must not take the API or a worker down.
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=2,
        name="lms",
    )
    broker.add_middlewares(RequestIdMiddleware())
    return broker


class BrokerConnection:
    """Connects the API's broker in the background and keeps trying, so the API starts (and
    reports not-ready on /readyz) while NATS is down; queued jobs wait in PostgreSQL meanwhile."""

    def __init__(self, broker: JobsBroker, retry_seconds: float = 2.0) -> None:
        self.broker = broker
        self.retry_seconds = retry_seconds
        self.connected = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def of_started(cls, broker: JobsBroker) -> BrokerConnection:
        """The connection of a broker its owner has started already (`lms worker`'s)."""
        connection = cls(broker)
        connection.connected = True
        return connection

    async def start(self) -> None:
        self._task = asyncio.create_task(self._connect_until_done(), name="nats-connect")

    async def _connect_until_done(self) -> None:
        while True:
            try:
                await self.broker.startup()
            except Exception as exc:
                log.warning("NATS not reachable yet (%s); retrying", exc or type(exc).__name__)
                with contextlib.suppress(Exception):
                    await self.broker.client.close()
                await asyncio.sleep(self.retry_seconds)
            else:
                self.connected = True
                log.info("connected to NATS JetStream")
                return

    async def ping(self, within: float = 1.0) -> bool:
        """True when NATS answers a round trip within `within` seconds."""
        client = self.broker.client
        if not self.connected or not client.is_connected:
            return False
        try:
            await client.flush(timeout=max(1, round(within)))
        except Exception:
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.connected:
            await self.broker.shutdown()
            self.connected = False
