"""Webhook delivery by workers: JetStream carries "endpoint X has work" and the worker that takes
it delivers that endpoint's queue, then the events after its place in the event log, from
PostgreSQL, in order, one request at a time.

- At least once: an endpoint's place in the log moves past a delivery only once the endpoint
  answered 2xx, and a queued delivery leaves the queue only then; a worker that dies
  mid-request leaves both as they were and its lease on the endpoint runs out, so another
  worker (the sweep, every few seconds) sends it again, with the same `webhook-id`.
- Order: one worker holds an endpoint (a lease in its row). A delivery read from the log that
  fails moves to the head of the endpoint's queue (the place moves past it) and the endpoint
  waits (exponential backoff with full jitter, capped by LMS_WEBHOOK_RETRY_MAX); every drain
  sends the queue before anything after the place, so later events never overtake an earlier
  one while the receiver is up.
- An endpoint that has failed every attempt for LMS_WEBHOOK_DISABLE_AFTER is disabled with the
  reason; its queue and place stay, and what it missed goes out once an admin enables it.
- Outbound: the video-download address policy (lms.integrations.fetch_policy, exceptions in
  LMS_WEBHOOK_ALLOW) checked at each connection; no redirect followed (a 3xx is a failure); the
  whole exchange bounded by LMS_WEBHOOK_TIMEOUT and the answer's body read to at most 64 KiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpcore
import msgspec
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from lms.db.queries import Conn, event_cursors
from lms.db.queries import webhooks as sql
from lms.domain.events import cursor, signing
from lms.domain.events.cursor import Place
from lms.domain.events.log import Event
from lms.domain.events.webhooks import webhooks_subject
from lms.integrations.fetch_policy import FetchPolicy, FetchRefused
from lms.integrations.keepalive_post import KeepAlivePoster
from lms.observability.metrics import WEBHOOK_DELIVERIES, WEBHOOK_LATENCY, WEBHOOK_QUEUE_DEPTH
from lms.observability.paced import PacedRefresh
from lms.observability.tally import TALLY
from lms.settings import Settings

log = logging.getLogger("lms.webhooks")

CONSUMER_NAME = "lms-webhooks"
LEASE_SECONDS = 60.0  # renewed by every success; a dead worker's endpoint is free after this
PAGE = 100
MAX_RESPONSE_BYTES = 64 * 1024
SWEEP_SECONDS = 2.0
# The queue-depth gauges (a count per endpoint of its backlog) are refreshed this often, or
# less often as the count gets dear (lms.observability.paced); a scrape of the API's /metrics
# counts afresh too (lms.domain.events.dispatcher.refresh_metrics).
DEPTH_SECONDS = 10.0
# Deliveries answered 2xx are marked DELIVERED together, at least this often (and at the end of
# a page, before a failure is recorded, when the drain stops): a statement per delivery was
# most of the database's share of the work. A worker dying in between sends those again, with
# the same webhook-id (at least once, as the contract says).
MARK_SECONDS = 0.25
USER_AGENT = b"lms-webhooks/1"


def retry_delay(settings: Settings, failures: int) -> float:
    """Full jitter over an exponential ceiling: receivers coming back are not hit in step."""
    ceiling = min(
        settings.webhook_retry_base_ms / 1000 * 2 ** max(failures - 1, 0),
        float(settings.webhook_retry_max_seconds),
    )
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


_DELIVERED: dict[str, Any] = {}  # endpoint label -> its "delivered" series (labels() is dear)


def _delivered_series(label: str) -> Any:
    series = _DELIVERED.get(label)
    if series is None:
        series = _DELIVERED[label] = WEBHOOK_DELIVERIES.labels(label, "delivered")
    return series


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    status: int | None
    error: str | None


def body_of(type_: str, occurred: datetime, data_json: str) -> bytes:
    """`{type, timestamp, data}`, the Standard Webhooks payload shape. The data goes in as the
    JSON text PostgreSQL gave (decoding it to re-encode it was a tenth of a worker's CPU per
    delivery); the type is a checked identifier (the events table's CHECK), the timestamp ISO."""
    timestamp = occurred.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return b"".join(
        (
            b'{"type":',
            msgspec.json.encode(type_),
            b',"timestamp":"',
            timestamp.encode(),
            b'","data":',
            data_json.encode(),
            b"}",
        )
    )


class Poster:
    """POSTs to one endpoint over one kept-alive connection that obeys the policy."""

    def __init__(
        self, url: str, policy: FetchPolicy, timeout_seconds: float, ssl_context: ssl.SSLContext
    ) -> None:
        self.timeout = timeout_seconds
        self.client = KeepAlivePoster(url, policy, ssl_context, max_body=MAX_RESPONSE_BYTES)

    async def close(self) -> None:
        self.client.close()

    async def post(self, body: bytes, headers: dict[str, str]) -> Outcome:
        request_headers = [
            (b"Content-Type", b"application/json"),
            (b"User-Agent", USER_AGENT),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]
        try:
            async with asyncio.timeout(self.timeout):
                status = await self.client.post(body, request_headers)
        except FetchRefused as exc:
            return Outcome(False, None, f"refused by the outbound address policy: {exc}")
        except TimeoutError:
            self.client.close()  # mid-exchange: the connection cannot carry another request
            return Outcome(False, None, f"no answer within {self.timeout:g} s")
        except Exception as exc:  # the network: unreachable, reset, not HTTP
            self.client.close()
            detail = str(exc).strip().splitlines()
            return Outcome(
                False, None, f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
            )
        if 200 <= status < 300:
            return Outcome(True, status, None)
        if 300 <= status < 400:
            return Outcome(False, status, f"answered {status}: redirects are not followed")
        return Outcome(False, status, f"answered {status}")


class WebhookDeliverer:
    """Delivers endpoints' queues; driven by JetStream messages and a periodic sweep."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.policy = FetchPolicy.from_entries(settings.webhook_allow)
        # Made once: loading the CA bundle takes tens of milliseconds of blocking work.
        self.ssl_context = httpcore.default_ssl_context()
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._depths = PacedRefresh(DEPTH_SECONDS)

    def kick(self, endpoint_id: uuid.UUID) -> None:
        """Drain the endpoint in the background unless this process is on it already."""
        task = self._running.get(endpoint_id)
        if task is not None and not task.done():
            return
        self._running[endpoint_id] = asyncio.create_task(
            self.drain(endpoint_id), name=f"webhook-{endpoint_id}"
        )

    async def stop(self) -> None:
        tasks = [t for t in self._running.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    async def sweep(self) -> int:
        """Start every endpoint that has due deliveries and nobody on it; refresh the gauges
        every DEPTH_SECONDS."""
        due = await sql.due_endpoints(self.pool)
        for endpoint_id in due:
            self.kick(endpoint_id)
        if self._depths.due():
            with self._depths.timed():
                depths = await sql.queue_depths(self.pool)
            for endpoint_id, depth in depths.items():
                WEBHOOK_QUEUE_DEPTH.labels(str(endpoint_id)).set(depth)
        return len(due)

    async def drain(self, endpoint_id: uuid.UUID) -> None:
        """Send the endpoint's queue, then the events after its place in the log, in order,
        until both are done or an attempt fails."""
        try:
            endpoint = await sql.lease(self.pool, endpoint_id, LEASE_SECONDS)
        except Exception as exc:
            log.warning("webhooks: cannot lease endpoint %s: %s", endpoint_id, exc)
            return
        if endpoint is None:  # another worker has it, it is waiting out a backoff, or disabled
            return
        poster = Poster(
            endpoint["url"],
            self.policy,
            float(self.settings.webhook_timeout_seconds),
            self.ssl_context,
        )
        keep_lease = True
        marks = _Marks(self.pool, endpoint_id)
        from_log = _LogMarks(self.pool, endpoint_id)
        try:
            # The queue first: deliveries that failed at the head of the log (the order holds
            # only if they go before anything after the place), and those asked for again.
            while rows := await sql.pending(self.pool, endpoint_id, PAGE):
                for row in rows:
                    if not await self._attempt(endpoint, poster, row, marks):
                        keep_lease = False  # `failed` released it, with the backoff
                        return
                await marks.write()
            reader = sql.reader_of(endpoint_id)
            while True:
                found = await event_cursors.place(self.pool, reader)
                if found is None:  # the endpoint was deleted meanwhile
                    return
                place = Place.of(found)
                batch = await cursor.read(
                    self.pool,
                    place,
                    found["latest_tick"],
                    PAGE,
                    endpoint["events"],
                    data_as_text=True,
                    oldest_tick=found["oldest_tick"],
                )
                if batch.end == place:
                    return
                for event, past in zip(batch.events, batch.places, strict=True):
                    if not await self._attempt_from_log(endpoint, poster, event, past, from_log):
                        keep_lease = False
                        return
                await from_log.write(batch.end)
        finally:
            await poster.close()
            with contextlib.suppress(Exception):  # unmarked: sent again (at least once)
                await marks.write()
            with contextlib.suppress(Exception):
                await from_log.write()
            if keep_lease:
                with contextlib.suppress(Exception):
                    await sql.release(self.pool, endpoint_id)

    async def _attempt_from_log(
        self,
        endpoint: asyncpg.Record,
        poster: Poster,
        event: Event,
        past: Place,
        marks: _LogMarks,
    ) -> bool:
        """One event after the endpoint's place: sent, and marked; or, failing, moved to the
        head of the endpoint's queue with the place past it (sql.park), and counted."""
        outcome = await self._post(
            endpoint, poster, event.id, event.type, event.occurred_at, event.data_json or "{}"
        )
        if outcome.ok:
            await marks.add(event, past, outcome.status or 200, datetime.now(UTC))
            return True
        await marks.write()  # the successes before it first: the log reads in order
        async with self.pool.acquire() as conn, conn.transaction():
            await sql.park(
                conn,
                endpoint["id"],
                (event.id, event.seq, event.type, event.occurred_at),
                (past.tick, past.xid, past.seq),
            )
            settled = await self._failed(conn, endpoint, event.seq, 0, outcome)
        self._log_failure(endpoint, settled, outcome)
        return False

    async def _post(
        self,
        endpoint: asyncpg.Record,
        poster: Poster,
        event_id: uuid.UUID,
        type_: str,
        occurred: datetime,
        data_json: str,
    ) -> Outcome:
        body = body_of(type_, occurred, data_json)
        headers = signing.headers(endpoint["secret"], str(event_id), int(time.time()), body)
        outcome = await poster.post(body, headers)
        label = str(endpoint["id"])
        if outcome.ok:
            # Counted in the process's tally, added to the shared series together: an increment
            # of a multiprocess series writes its file under a lock, twice per delivery here.
            TALLY.inc(_delivered_series(label))
            latency = (datetime.now(UTC) - occurred).total_seconds()
            TALLY.observe(WEBHOOK_LATENCY, max(latency, 0.0))
        else:
            WEBHOOK_DELIVERIES.labels(label, "failed").inc()
        return outcome

    async def _failed(
        self,
        conn: Conn,
        endpoint: asyncpg.Record,
        event_seq: int,
        attempts: int,
        outcome: Outcome,
    ) -> asyncpg.Record | None:
        return await sql.failed(
            conn,
            endpoint["id"],
            event_seq,
            response_status=outcome.status,
            error=outcome.error or "failed",
            retry_in_seconds=retry_delay(self.settings, attempts + 1),
            disable_after_seconds=float(self.settings.webhook_disable_after_seconds),
        )

    @staticmethod
    def _log_failure(
        endpoint: asyncpg.Record, settled: asyncpg.Record | None, outcome: Outcome
    ) -> None:
        if settled is None:  # the endpoint was deleted meanwhile
            return
        if settled["disabled_at"] is not None:
            log.error("webhooks: endpoint %s disabled: %s", endpoint["id"], outcome.error)
        else:
            log.warning(
                "webhooks: delivery to endpoint %s failed (%d in a row): %s",
                endpoint["id"],
                settled["consecutive_failures"],
                outcome.error,
            )

    async def _attempt(
        self, endpoint: asyncpg.Record, poster: Poster, row: asyncpg.Record, marks: _Marks
    ) -> bool:
        """One queued delivery: sent, and marked; or, failing, counted (it stays at the head)."""
        outcome = await self._post(
            endpoint, poster, row["event_id"], row["type"], row["occurred_at"], row["data_json"]
        )
        if outcome.ok:
            await marks.add(row["event_seq"], outcome.status or 200, datetime.now(UTC))
            return True
        await marks.write()  # the successes before it first: the log reads in order
        settled = await self._failed(
            self.pool, endpoint, row["event_seq"], row["attempts"], outcome
        )
        self._log_failure(endpoint, settled, outcome)
        return False


class _Marks:
    """One drain's deliveries answered 2xx and not yet marked (see MARK_SECONDS)."""

    def __init__(self, pool: asyncpg.Pool, endpoint_id: uuid.UUID) -> None:
        self.pool = pool
        self.endpoint_id = endpoint_id
        self.seqs: list[int] = []  # the deliveries' places in the endpoint's queue
        self.statuses: list[int] = []
        self.times: list[datetime] = []
        self.since = 0.0

    async def add(self, event_seq: int, status: int, at: datetime) -> None:
        if not self.seqs:
            self.since = time.monotonic()
        self.seqs.append(event_seq)
        self.statuses.append(status)
        self.times.append(at)
        if time.monotonic() - self.since >= MARK_SECONDS:
            await self.write()

    async def write(self) -> None:
        if not self.seqs:
            return
        await sql.delivered(
            self.pool, self.endpoint_id, self.seqs, self.statuses, self.times, LEASE_SECONDS
        )
        self.seqs, self.statuses, self.times = [], [], []


class _LogMarks:
    """One drain's deliveries read from the log, answered 2xx, and not yet logged with the
    endpoint's move past them (see MARK_SECONDS)."""

    def __init__(self, pool: asyncpg.Pool, endpoint_id: uuid.UUID) -> None:
        self.pool = pool
        self.endpoint_id = endpoint_id
        self.items: list[tuple[uuid.UUID, int, str, datetime, int, datetime]] = []
        self.place: Place | None = None  # past the last of them
        self.since = 0.0

    async def add(self, event: Event, past: Place, status: int, at: datetime) -> None:
        if not self.items:
            self.since = time.monotonic()
        self.items.append((event.id, event.seq, event.type, event.occurred_at, status, at))
        self.place = past
        if time.monotonic() - self.since >= MARK_SECONDS:
            await self.write()

    async def write(self, end: Place | None = None) -> None:
        """Log what is marked and move the place past it, or to `end` (past the whole page)."""
        place = end or self.place
        if place is None:
            return
        await sql.delivered_from_log(
            self.pool,
            self.endpoint_id,
            self.items,
            (place.tick, place.xid, place.seq),
            LEASE_SECONDS,
        )
        self.items, self.place = [], None


async def ensure_consumer(nc: NatsClient, settings: Settings) -> None:
    js = nc.jetstream()
    config = ConsumerConfig(
        durable_name=CONSUMER_NAME,
        filter_subject=webhooks_subject(settings),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30.0,
        max_deliver=-1,
    )
    try:
        await js.consumer_info(settings.jobs_stream, CONSUMER_NAME)
    except NotFoundError:
        await js.add_consumer(settings.jobs_stream, config)


async def run_deliverer(
    nc: NatsClient,
    deliverer: WebhookDeliverer,
    settings: Settings,
    stop: asyncio.Event,
    *,
    sweep_seconds: float = SWEEP_SECONDS,
) -> None:
    """Pull "endpoint has work" messages and sweep, until `stop`. A message is acked once its
    endpoint's drain has started: PostgreSQL holds the work, the message is only a wake-up."""
    sweeping = asyncio.create_task(
        _sweep_forever(deliverer, stop, sweep_seconds), name="webhook-sweep"
    )
    try:
        subscription = None
        while not stop.is_set():
            try:
                if subscription is None:
                    await ensure_consumer(nc, settings)
                    subscription = await nc.jetstream().pull_subscribe_bind(
                        CONSUMER_NAME, stream=settings.jobs_stream
                    )
                messages = await subscription.fetch(batch=50, timeout=1.0)
            except TimeoutError:
                continue
            except Exception as exc:  # NATS away: the sweep still delivers from PostgreSQL
                log.warning("webhooks: pulling from JetStream failed: %s", exc)
                subscription = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SWEEP_SECONDS):
                        await stop.wait()
                continue
            for message in messages:
                with contextlib.suppress(ValueError):
                    deliverer.kick(uuid.UUID(message.data.decode()))
                with contextlib.suppress(Exception):
                    await message.ack()
    finally:
        await sweeping
        await deliverer.stop()


async def _sweep_forever(
    deliverer: WebhookDeliverer, stop: asyncio.Event, every_seconds: float
) -> None:
    while not stop.is_set():
        try:
            await deliverer.sweep()
        except Exception as exc:
            log.warning("webhooks: sweep failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every_seconds):
                await stop.wait()
