"""`lms worker`: a taskiq receiver pulling jobs from NATS JetStream until SIGTERM/SIGINT.

A stop signal ends prefetching at once and lets the jobs in hand finish; a job that cannot finish
is not acked and JetStream redelivers it to another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from taskiq.acks import AcknowledgeType
from taskiq.receiver import Receiver

from lms import heap
from lms.broker import BrokerConnection, JobsBroker, make_broker
from lms.db.engine import close_pool, start_pool
from lms.domain.events.delivery import WebhookDeliverer, run_deliverer
from lms.domain.events.dispatcher import EventDispatcher, EventSink
from lms.domain.events.webhooks import WebhookSink
from lms.domain.events.xapi_sink import XapiSink
from lms.domain.events.xapi_sink import make_sender as make_xapi_sender
from lms.domain.events.xapi_sink import run_sender as run_xapi_sender
from lms.domain.transcripts import tasks
from lms.domain.transcripts.sweeper import sweep_forever
from lms.errors import StartupError
from lms.integrations.storages import make_storage
from lms.integrations.whisper import Transcriber, WhisperError, choose_device, cuda_failure
from lms.integrations.whisper.decoding import plan
from lms.observability.metrics_access import metrics_access
from lms.observability.metrics_server import serve_metrics
from lms.settings import Settings

log = logging.getLogger("lms.worker")

# Modules whose import registers tasks on the broker (each exposes `register(broker)`).
TASK_MODULES: tuple[str, ...] = ("lms.domain.transcripts.tasks",)
CONNECT_RETRY_SECONDS = 2.0


def register_tasks(broker: JobsBroker) -> list[str]:
    for name in TASK_MODULES:
        importlib.import_module(name).register(broker)
    return sorted(broker.get_all_tasks())


async def _start_broker(broker: JobsBroker, stop: asyncio.Event) -> bool:
    """Connect, retrying while NATS is down; False when asked to stop first."""
    while not stop.is_set():
        try:
            await broker.startup()
        except Exception as exc:
            log.warning("NATS not reachable yet (%s); retrying", exc or type(exc).__name__)
            with contextlib.suppress(Exception):  # a half-open client may fail to close
                await broker.client.close()
            try:
                await asyncio.wait_for(stop.wait(), CONNECT_RETRY_SECONDS)
            except TimeoutError:
                continue
        else:
            return True
    return False


def load_transcriber(settings: Settings, concurrency: int | None = None) -> Transcriber:
    """One Whisper model per process, loaded before the first job is taken; a device or model
    that cannot be had is an operator's mistake, reported in one line. `concurrency` None means
    the decoding table's for this device and model (lms.integrations.whisper.decoding)."""
    try:
        choice = choose_device(settings.whisper_device, settings.whisper_compute_type)
        jobs = (
            plan(choice.device, settings.whisper_model).concurrency
            if concurrency is None
            else concurrency
        )
        transcriber = Transcriber(
            settings.whisper_model, choice, num_workers=jobs, decoding=settings.whisper_decoding
        )
        loading = time.perf_counter()
        transcriber.load()
        loaded = time.perf_counter() - loading
        # Before the first job and before the metrics port (the readiness probe) opens: on a
        # fresh GPU the first use of each kernel compiles it (10.6-16.6 s on H200s).
        warmed = transcriber.warm_up()
    except (ValueError, WhisperError) as exc:
        raise StartupError(str(exc).splitlines()[0]) from None
    except RuntimeError as exc:  # the warm-up's first decoding on a GPU that cannot run it
        why = cuda_failure(exc) if choice.device == "cuda" else None
        raise StartupError(f"cannot warm up the Whisper model: {why or exc}") from None
    log.info(
        "whisper model loaded on %s (%s) in %.1fs and warmed up in %.1fs: %s; decoding %s",
        choice.device,
        choice.compute_type,
        loaded,
        warmed,
        choice.reason,
        transcriber.plan.reason,
        extra={
            "model": settings.whisper_model,
            "cpu_threads": choice.cpu_threads,
            "concurrency": jobs,
            "load_seconds": round(loaded, 2),
            "warm_up_seconds": round(warmed, 2),
        },
    )
    return transcriber


def event_dispatcher(
    db: asyncpg.Pool, settings: Settings, nats: BrokerConnection | None
) -> EventDispatcher:
    """The event log's dispatcher with its sinks: webhooks, and xAPI statements when an LRS is
    configured."""
    sinks: list[EventSink] = [WebhookSink(nats, settings)]
    if settings.xapi_endpoint:
        sinks.append(XapiSink(nats, settings))
    return EventDispatcher(db, sinks)


async def run_worker(settings: Settings, concurrency: int | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    transcriber = await asyncio.to_thread(load_transcriber, settings, concurrency)
    concurrency = transcriber.num_workers  # the table's default when none was given
    db = await start_pool(settings)
    tasks.install(tasks.WorkerRuntime(settings, make_storage(settings), transcriber, db))
    if settings.worker_metrics_port:
        # Behind the API's rule for /metrics (LMS_METRICS_TOKEN, LMS_METRICS_ALLOW).
        serve_metrics(settings.host, settings.worker_metrics_port, metrics_access(settings))
    broker = make_broker(settings)
    broker.is_worker_process = True
    task_names = register_tasks(broker)
    if not await _start_broker(broker, stop):
        await close_pool()
        return
    # What exists now (modules, the model's Python side, the broker) lives as long as the
    # process. Frozen, the collector stops walking it: the event senders build a dict or more
    # per statement and delivery, and each full collection walked the whole start-up heap
    # (6 % of a delivering worker's samples fell on one dict literal of the xAPI mapping).
    heap.settle()
    log.info(
        "worker ready",
        extra={"concurrency": concurrency, "tasks": task_names, "stream": settings.jobs_stream},
    )
    sweeping = asyncio.create_task(sweep_forever(db, settings, broker, stop), name="lms-sweeper")
    # The event log's fan-out (one worker at a time): the API only writes event rows, so what
    # integrations cost is the workers' to pay, not the requests'.
    events = event_dispatcher(db, settings, BrokerConnection.of_started(broker))
    events.start()
    # Webhook deliveries: "endpoint has work" messages on the same stream, and a sweep.
    delivering = asyncio.create_task(
        run_deliverer(broker.client, WebhookDeliverer(db, settings), settings, stop),
        name="lms-webhooks",
    )
    # The xAPI sender (LMS_XAPI_ENDPOINT): statements queued by the event dispatcher.
    xapi_sender = make_xapi_sender(db, settings)
    sending_xapi = (
        asyncio.create_task(
            run_xapi_sender(broker.client, xapi_sender, settings, stop), name="lms-xapi"
        )
        if xapi_sender is not None
        else None
    )
    with ThreadPoolExecutor(max_workers=concurrency) as executor:
        receiver = Receiver(
            broker=broker,
            executor=executor,
            run_startup=False,
            max_async_tasks=concurrency,
            # Ack only once the result is stored: a worker killed mid-job leaves it unacked,
            # so JetStream hands it to another worker after ack_wait.
            ack_type=AcknowledgeType.WHEN_SAVED,
        )
        try:
            await receiver.listen(stop)
        finally:
            stop.set()
            await sweeping
            await events.stop()
            await delivering
            if sending_xapi is not None:
                await sending_xapi
            await broker.shutdown()
            await close_pool()
    log.info("worker stopped")
