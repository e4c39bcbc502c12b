"""The job transport over real NATS JetStream: the API publishes without consuming, an unacked job
comes back after LMS_JOBS_ACK_WAIT until LMS_JOBS_MAX_DELIVER deliveries, and the request id
travels from the API request into the job the worker runs. Each test has a stream of its own, so
none disturbs the session's stream other tests share."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import nats
import pytest
from nats.js.api import RetentionPolicy
from nats.js.errors import NotFoundError
from taskiq.receiver import Receiver

from lms.broker import CONSUMER_NAME, make_broker
from lms.domain.transcripts.jobs import kick
from lms.observability.logs import request_id_var
from lms.settings import Settings


@pytest.fixture
async def own(settings: Settings) -> AsyncIterator[Settings]:
    """The session's settings with a job stream of this test's own (removed afterwards), a short
    ack wait and two deliveries."""
    tag = uuid.uuid4().hex[:10]
    yield replace(
        settings,
        jobs_stream=f"BROKER_TEST_{tag}",
        jobs_subject=f"brokertest.{tag}",
        jobs_ack_wait_seconds=3,
        jobs_max_deliver=2,
    )
    client = await nats.connect(settings.nats_url)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(f"BROKER_TEST_{tag}")
    finally:
        await client.close()


async def test_api_broker_publishes_without_consuming(own: Settings) -> None:
    api = make_broker(own)
    await api.startup()
    try:
        await kick(api, uuid.uuid4())
        js = api.client.jetstream()
        stream = await js.stream_info(own.jobs_stream)
        assert stream.config.retention == RetentionPolicy.WORK_QUEUE
        assert stream.state.messages == 1  # kept for a worker: nobody here took it
        with pytest.raises(NotFoundError):
            await js.consumer_info(own.jobs_stream, CONSUMER_NAME)
    finally:
        await api.shutdown()


async def test_an_unacked_job_comes_back_until_its_deliveries_run_out(own: Settings) -> None:
    """A worker that takes a job and dies without acking: JetStream hands the job out again after
    the ack wait, and gives up after LMS_JOBS_MAX_DELIVER deliveries (its advisory says so)."""
    api, worker = make_broker(own), make_broker(own)
    worker.is_worker_process = True
    await worker.startup()
    await api.startup()
    try:
        advisories = await api.client.subscribe(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{own.jobs_stream}.{CONSUMER_NAME}"
        )
        await kick(api, job_id := uuid.uuid4())
        [first] = await worker.consumer.fetch(1, timeout=10)
        assert str(job_id) in first.data.decode()
        [again] = await worker.consumer.fetch(1, timeout=30)  # no ack: back after the ack wait
        assert again.data == first.data
        assert (first.metadata.num_delivered, again.metadata.num_delivered) == (1, 2)
        # A worker asking for more: a third delivery would go to it. JetStream reports giving up
        # instead (only while someone is asking), and the worker gets nothing.
        third = asyncio.create_task(worker.consumer.fetch(1, timeout=60))
        advisory = json.loads((await advisories.next_msg(timeout=30)).data)
        assert advisory["deliveries"] == own.jobs_max_deliver == 2
        assert advisory["stream_seq"] == again.metadata.sequence.stream
        assert not third.done()
        third.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await third
    finally:
        await api.shutdown()
        await worker.shutdown()


async def test_request_id_travels_from_api_to_worker(own: Settings) -> None:
    seen: asyncio.Queue[str | None] = asyncio.Queue()

    async def record_request_id() -> None:
        await seen.put(request_id_var.get())

    api, worker = make_broker(own), make_broker(own)
    worker.is_worker_process = True
    api_task = api.register_task(record_request_id, task_name="tests.record_request_id")
    worker.register_task(record_request_id, task_name="tests.record_request_id")
    await api.startup()
    await worker.startup()

    token = request_id_var.set("req-from-http-123")
    try:
        await api_task.kiq()
    finally:
        request_id_var.reset(token)

    stop = asyncio.Event()
    with ThreadPoolExecutor(max_workers=1) as executor:
        receiver = Receiver(broker=worker, executor=executor, run_startup=False, max_async_tasks=1)
        listening = asyncio.create_task(receiver.listen(stop))
        try:
            assert await asyncio.wait_for(seen.get(), timeout=20) == "req-from-http-123"
        finally:
            stop.set()
            await asyncio.wait_for(listening, timeout=20)
            await api.shutdown()
            await worker.shutdown()

    # Acked: nothing is left for another worker to pick up.
    client = await nats.connect(own.nats_url)
    try:
        info = await client.jetstream().consumer_info(own.jobs_stream, CONSUMER_NAME)
        assert info.num_pending == 0 and info.num_ack_pending == 0
    finally:
        await client.close()
