"""The xAPI sender: workers read the event log from the xAPI reader's place (lms.domain.events
.cursor), build each event's statement and POST them to the LRS in batches, retrying with
backoff while it is down.

Nothing is lost: the reader's place moves past a statement only once the LRS answered 2xx for a
batch that held it (or refused that statement alone, see below). Nothing is duplicated: the
statement id is derived from the event id and the statement from the event row, so a batch sent
again after a lost answer (a timeout, a sender killed before it moved) carries the same
statements under the same ids, which an LRS stores once (xAPI 1.0.3: a repeated id with an
equivalent statement is not stored again). Senders in several processes take turns: the one
sending holds an advisory lock on the connection that read its batch until it has moved past
it, so one batch is never in flight from two senders at once, and sending writes one row per
batch (the place), nothing per statement.

How the LRS's answers are read:
- 200 / 204: the batch is stored.
- 409 (a statement with that id and different content is stored) or another 4xx on a batch: the
  batch is sent again statement by statement, so one bad statement holds up none of the others;
  a single statement refused that way is REJECTED (logged, counted, kept in xapi_statements for
  an operator).
- 401, 403, 408, 429, 5xx, a timeout or no connection: the LRS (or its credentials) is not
  taking anything now; the reader waits with exponential backoff and jitter, forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import msgspec
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge, Histogram

from lms.background import BackgroundTask
from lms.db.queries import event_cursors as cursors
from lms.db.queries import xapi as sql
from lms.domain.events import cursor, xapi
from lms.domain.events.cursor import Batch, Place
from lms.domain.events.log import Event
from lms.observability.paced import PacedRefresh
from lms.settings import Settings

if TYPE_CHECKING:
    from lms.broker import BrokerConnection

log = logging.getLogger("lms.xapi")

BATCH = 100
# The xAPI sender's place in the event log (event_cursors).
READER = "xapi"
CONSUMER_NAME = "lms-xapi"
HTTP_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 2.0
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0
# LRS answers that say "not now" rather than "not this statement".
TRANSIENT_STATUSES = frozenset({401, 403, 408, 425, 429})

XAPI_STATEMENTS = Counter(
    "lms_xapi_statements_total",
    "xAPI statements by outcome: queued (read from the log for the LRS), sent, retried (their "
    "batch waits for the LRS), "
    "rejected (refused by the LRS as such), unmappable (an event lacking a field).",
    ["outcome"],
)
XAPI_QUEUE_DEPTH = Gauge(
    "lms_xapi_queue_depth",
    "Events with an xAPI statement the LRS has not taken yet (as a worker's sender last "
    "counted them).",
    multiprocess_mode="mostrecent",
)
XAPI_BATCH_SECONDS = Histogram(
    "lms_xapi_batch_seconds",
    "Time the LRS took to answer a batch of statements, by answer class.",
    ["answer"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def statements_of(batch: Batch, base_url: str) -> list[tuple[dict[str, Any], Event, Place]]:
    """Each event's statement with the event and the place past it; an event of a mapped type
    that lacks a field is logged and passed over (its place moves with the next statement)."""
    out: list[tuple[dict[str, Any], Event, Place]] = []
    for event, place in zip(batch.events, batch.places, strict=True):
        try:
            statement = xapi.statement_for(
                event.id, event.type, event.occurred_at, event.data, base_url=base_url
            )
        except xapi.UnmappableEvent as exc:
            XAPI_STATEMENTS.labels("unmappable").inc()
            log.error("xapi: event %s (%s) has no statement: %s", event.id, event.type, exc)
            continue
        if statement is not None:
            out.append((statement, event, place))
    return out


def retry_delay(attempts: int, *, base: float, cap: float) -> float:
    """Exponential backoff with jitter (half to all of the step), so senders that failed
    together do not come back together."""
    step = min(base * 2 ** max(attempts - 1, 0), cap)
    return float(step * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True, slots=True)
class LrsAnswer:
    status: int | None  # None: no answer (connection refused, timeout)
    detail: str

    @property
    def stored(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in TRANSIENT_STATUSES or self.status >= 500


class LrsClient:
    """POSTs statement batches to `<endpoint>/statements` with Basic auth."""

    def __init__(
        self,
        endpoint: str,
        username: str | None,
        password: str | None,
        *,
        timeout: float = HTTP_TIMEOUT_SECONDS,
    ) -> None:
        self.url = f"{endpoint.rstrip('/')}/statements"
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._http = httpx.AsyncClient(
            auth=auth,
            timeout=timeout,
            follow_redirects=False,
            headers={"X-Experience-API-Version": xapi.XAPI_VERSION},
        )

    async def post(self, statements: Sequence[dict[str, Any]]) -> LrsAnswer:
        body = msgspec.json.encode(list(statements))
        started = time.perf_counter()
        try:
            response = await self._http.post(
                self.url, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            XAPI_BATCH_SECONDS.labels("none").observe(time.perf_counter() - started)
            return LrsAnswer(None, f"{type(exc).__name__}: {exc}"[:500])
        XAPI_BATCH_SECONDS.labels(f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return LrsAnswer(response.status_code, response.text[:500])

    async def close(self) -> None:
        await self._http.aclose()


class XapiSender:
    """Sends what is after the xAPI reader's place: one batch per turn, a loop when started."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        client: LrsClient,
        base_url: str,
        *,
        batch: int = BATCH,
        retry_base: float = RETRY_BASE_SECONDS,
        retry_max: float = RETRY_MAX_SECONDS,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.pool = pool
        self.poll_seconds = poll_seconds
        self.client = client
        self.base_url = base_url
        self.batch = batch
        self.retry_base = retry_base
        self.retry_max = retry_max
        self._wake = asyncio.Event()
        self._task = BackgroundTask("lms-xapi")
        self._others_turn = False  # the last send_due found another sender sending
        self._wait: float | None = None  # the reader's backoff, as the last send_due saw it
        self._depth = PacedRefresh(poll_seconds)

    def wake(self, _payload: str = "") -> None:
        self._wake.set()

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()
        await self.client.close()

    async def _run(self) -> None:
        while True:
            try:
                if await self.send_due():
                    continue  # there may be more
                poll = self.poll_seconds
                if self._others_turn:  # it sends what is due; look again after a poll
                    timeout = poll
                else:
                    await self._refresh_depth()
                    wait = self._wait
                    timeout = poll if not wait else min(max(wait, 0.05), poll)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down: keep trying, nothing is lost
                log.warning("xapi: sending failed: %s", exc)
                timeout = self.poll_seconds
            # asyncio.timeout, not wait_for (see OutboxDispatcher._run).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()

    async def _refresh_depth(self) -> None:
        """The queue-depth gauge: a count of the backlog, so paced by what it costs (an LRS
        down for days leaves millions of statements to count, every poll)."""
        if not self._depth.due():
            return
        with self._depth.timed():
            depth = await cursors.unread_count(self.pool, READER, sorted(xapi.MAPPED_TYPES))
        XAPI_QUEUE_DEPTH.set(depth)

    async def send_due(self) -> int:
        """Send one batch of what is after the reader's place, if no other sender is sending
        now and the LRS is not being waited for; the number of statements sent or settled
        otherwise (0: nothing to send, a backoff, or another sender's turn)."""
        async with self.pool.acquire() as conn:
            try:
                self._others_turn = not await sql.try_lock_sending(conn)
            except BaseException:
                # Cancelled (a stopping sender) or failed while asking: the server may have
                # granted the turn all the same, and the pool does not reset connections, so
                # this one must not go back to it.
                conn.terminate()
                raise
            if self._others_turn:
                return 0
            try:
                row = await cursors.place(conn, READER)
                if row is None:  # the dispatcher has not met an event since the LRS was set
                    self._wait = None
                    return 0
                self._wait = row["wait_seconds"]
                if self._wait:
                    return 0
                place = Place.of(row)
                batch = await cursor.read(
                    conn, place, row["latest_tick"], self.batch, sorted(xapi.MAPPED_TYPES)
                )
                statements = statements_of(batch, self.base_url)
                if statements:
                    await self._send(conn, statements, row["attempts"])
                if batch.end != place and (not statements or self._wait is None):
                    await self._move(conn, batch.end)
                return len(statements)
            finally:
                try:
                    await sql.unlock_sending(conn)
                except BaseException:
                    # Never back into the pool still holding the turn (the pool does not reset
                    # connections): the lock goes with the connection.
                    conn.terminate()
                    raise

    async def _move(self, conn: asyncpg.Connection, place: Place) -> None:
        await cursors.move(conn, READER, place.tick, place.xid, place.seq)
        self._wait = None

    async def _send(
        self,
        conn: asyncpg.Connection,
        statements: list[tuple[dict[str, Any], Event, Place]],
        attempts: int,
    ) -> None:
        """POST the statements; the reader moves past what the LRS took (or refused alone),
        or backs off (self._wait set) when the LRS takes nothing now."""
        answer = await self.client.post([statement for statement, _, _ in statements])
        if answer.stored:
            XAPI_STATEMENTS.labels("sent").inc(len(statements))
            self._wait = None
            return
        if answer.transient:
            delay = retry_delay(attempts + 1, base=self.retry_base, cap=self.retry_max)
            reason = (
                f"LRS answered {answer.status}: {answer.detail}"
                if answer.status
                else (answer.detail)
            )
            failures = await cursors.back_off(conn, READER, reason, delay)
            self._wait = delay
            XAPI_STATEMENTS.labels("retried").inc(len(statements))
            log.warning(
                "xapi: %d statements wait %.1fs (attempt %d): %s",
                len(statements),
                delay,
                failures,
                reason,
            )
            return
        if len(statements) > 1:  # one refused statement must not hold up the others
            for one in statements:
                await self._send(conn, [one], attempts)
                if self._wait is not None:
                    return  # the LRS stopped taking anything: the rest waits
                await self._move(conn, one[2])
            return
        statement, event, _ = statements[0]
        reason = f"LRS refused the statement ({answer.status}): {answer.detail}"
        await sql.reject(conn, event.id, event.type, statement, reason)
        XAPI_STATEMENTS.labels("rejected").inc()
        self._wait = None
        log.error(
            "xapi: statement %s of event %s (%s) rejected: %s",
            statement["id"],
            event.id,
            event.type,
            reason,
        )


def xapi_subject(settings: Settings) -> str:
    """Where "statements are queued" goes: the jobs stream, beside the transcription jobs."""
    return f"{settings.jobs_subject}.xapi"


class XapiSink:
    """The xAPI side of the workers' EventDispatcher (when LMS_XAPI_ENDPOINT is set): the first
    batch it sees gives the xAPI reader its place (where the dispatcher read from: every event
    not yet dispatched when the LRS was set gets a statement); after each commit that held a
    mapped event, one wake-up on NATS for the workers' senders (who also poll, so a lost
    wake-up delays, never loses)."""

    name = "xapi"

    def __init__(self, nats: BrokerConnection | None, settings: Settings) -> None:
        self.nats = nats
        self.subject = xapi_subject(settings)
        self._mapped = 0
        self._has_reader = False  # known to exist (committed) in this process

    async def accept(self, conn: asyncpg.Connection, events: Sequence[Event], since: Place) -> None:
        if not self._has_reader:
            await cursors.add_reader(conn, READER, since.tick, since.xid, since.seq)
        self._mapped += sum(1 for event in events if event.type in xapi.MAPPED_TYPES)

    async def after_commit(self) -> None:
        self._has_reader = True
        mapped, self._mapped = self._mapped, 0
        XAPI_STATEMENTS.labels("queued").inc(mapped)
        nats = self.nats
        if not mapped or nats is None or not nats.connected:
            return
        await nats.broker.client.jetstream().publish(self.subject, b"queued", timeout=2.0)


def make_sender(pool: asyncpg.Pool, settings: Settings) -> XapiSender | None:
    """The sender for LMS_XAPI_ENDPOINT, or None when no LRS is configured."""
    if not settings.xapi_endpoint:
        return None
    client = LrsClient(settings.xapi_endpoint, settings.xapi_username, settings.xapi_password)
    return XapiSender(pool, client, settings.base_url)


async def ensure_consumer(nc: NatsClient, settings: Settings) -> None:
    js = nc.jetstream()
    try:
        await js.consumer_info(settings.jobs_stream, CONSUMER_NAME)
    except NotFoundError:
        await js.add_consumer(
            settings.jobs_stream,
            ConsumerConfig(
                durable_name=CONSUMER_NAME,
                filter_subject=xapi_subject(settings),
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30.0,
                max_deliver=-1,
            ),
        )


async def run_sender(
    nc: NatsClient, sender: XapiSender, settings: Settings, stop: asyncio.Event
) -> None:
    """A worker's xAPI sender until `stop`: its loop sends what is due (polling the log every
    POLL_SECONDS), and each "statements are queued" message from JetStream wakes it at once.
    Messages are acked on receipt: PostgreSQL holds the work, a message is only a wake-up."""
    sender.start()
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
            except Exception as exc:  # NATS away: the sender's polling still sends
                log.warning("xapi: pulling from JetStream failed: %s", exc)
                subscription = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await stop.wait()
                continue
            if messages:
                sender.wake()
            for message in messages:
                with contextlib.suppress(Exception):
                    await message.ack()
    finally:
        await sender.stop()
