"""The job transport over real NATS JetStream: stream and durable consumer settings, and the
request id travelling from the API request into the job the worker runs."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import nats
import pytest
from nats.js.api import AckPolicy, RetentionPolicy
from nats.js.errors import NotFoundError
from taskiq.receiver import Receiver

from lms.broker import ACK_WAIT_SECONDS, CONSUMER_NAME, make_broker
from lms.observability.logs import request_id_var
from lms.settings import Settings


async def test_api_broker_publishes_without_consuming(settings: Settings) -> None:
    api = make_broker(settings)
    await api.startup()
    try:
        js = api.client.jetstream()
        stream = await js.stream_info(settings.jobs_stream)
        assert stream.config.retention == RetentionPolicy.WORK_QUEUE
        with pytest.raises(NotFoundError):
            await js.consumer_info(settings.jobs_stream, CONSUMER_NAME)
    finally:
        await api.shutdown()


async def test_request_id_travels_from_api_to_worker(settings: Settings) -> None:
    seen: asyncio.Queue[str | None] = asyncio.Queue()

    async def record_request_id() -> None:
        await seen.put(request_id_var.get())

    api, worker = make_broker(settings), make_broker(settings)
    worker.is_worker_process = True
    api_task = api.register_task(record_request_id, task_name="tests.record_request_id")
    worker.register_task(record_request_id, task_name="tests.record_request_id")
    await api.startup()
    await worker.startup()

    consumer = await worker.client.jetstream().consumer_info(settings.jobs_stream, CONSUMER_NAME)
    assert consumer.config.ack_policy == AckPolicy.EXPLICIT
    assert consumer.config.ack_wait == ACK_WAIT_SECONDS
    assert consumer.config.max_deliver == settings.jobs_max_deliver

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
    client = await nats.connect(settings.nats_url)
    try:
        info = await client.jetstream().consumer_info(settings.jobs_stream, CONSUMER_NAME)
        assert info.num_pending == 0 and info.num_ack_pending == 0
        await client.jetstream().delete_stream(settings.jobs_stream)
    finally:
        await client.close()
