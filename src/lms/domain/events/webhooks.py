"""Webhook endpoints (the admin API's rules) and the sink that queues their deliveries."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
from msgspec import UNSET

from lms.db.queries import webhooks as sql
from lms.domain.errors import Conflict, Invalid, NotFound
from lms.domain.events.cursor import Place
from lms.domain.events.log import EVENT_TYPES, Event
from lms.domain.events.schemas import (
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookDeliveryPage,
    WebhookUpdate,
)
from lms.domain.events.signing import new_secret
from lms.domain.paging import after_position, time_id_page
from lms.integrations.fetch_policy import FetchPolicy, FetchRefused
from lms.settings import Settings

if TYPE_CHECKING:
    from lms.broker import BrokerConnection

log = logging.getLogger("lms.webhooks")


def _check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - EVENT_TYPES)
    if unknown:
        raise Invalid(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}"
        )
    return sorted(set(events))


def _check_url(settings: Settings, url: str) -> str:
    """What the URL alone tells: http(s), not a loopback/private/metadata address written out
    (unless LMS_WEBHOOK_ALLOW names it). Each delivery checks every address it connects to."""
    url = url.strip()
    try:
        FetchPolicy.from_entries(settings.webhook_allow).check_url_early(url)
    except FetchRefused as exc:
        raise Invalid(f"url: {exc}") from None
    return url


async def create(db: asyncpg.Pool, settings: Settings, data: WebhookCreate) -> WebhookCreated:
    row = await sql.insert_endpoint(
        db,
        url=_check_url(settings, data.url),
        events=_check_events(data.events),
        description=data.description.strip(),
        secret=new_secret(),
    )
    return WebhookCreated.from_row(row)


async def list_all(db: asyncpg.Pool) -> list[Webhook]:
    return [Webhook.from_row(row) for row in await sql.endpoints(db)]


async def get(db: asyncpg.Pool, endpoint_id: uuid.UUID) -> Webhook:
    row = await sql.endpoint(db, endpoint_id)
    if row is None:
        raise NotFound("no such webhook endpoint")
    return Webhook.from_row(row)


async def update(
    db: asyncpg.Pool, settings: Settings, endpoint_id: uuid.UUID, data: WebhookUpdate
) -> Webhook:
    if all(getattr(data, f) is UNSET for f in data.__struct_fields__):
        raise Invalid("nothing to change: give url, events, description or enabled")
    row = await sql.update_endpoint(
        db,
        endpoint_id,
        url=None if data.url is UNSET else _check_url(settings, data.url),
        events=None if data.events is UNSET else _check_events(data.events),
        description=None if data.description is UNSET else data.description.strip(),
        enabled=None if data.enabled is UNSET else data.enabled,
    )
    if row is None:
        raise NotFound("no such webhook endpoint")
    return Webhook.from_row(row)


async def delete(db: asyncpg.Pool, endpoint_id: uuid.UUID) -> None:
    if not await sql.delete_endpoint(db, endpoint_id):
        raise NotFound("no such webhook endpoint")


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"],
        event_id=row["event_id"],
        type=row["type"],
        attempt=row["attempts"],
        status=row["status"],
        response_status=row["response_status"],
        error=row["error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )


async def deliveries(
    db: asyncpg.Pool,
    secret: str,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> WebhookDeliveryPage:
    await get(db, endpoint_id)
    after = after_position(secret, f"webhook-deliveries:{endpoint_id}", cursor)
    rows = await sql.deliveries_page(db, endpoint_id, status=status, after=after, limit=limit + 1)
    return time_id_page(
        rows,
        limit,
        page=WebhookDeliveryPage,
        convert=_delivery,
        secret=secret,
        scope=f"webhook-deliveries:{endpoint_id}",
    )


def webhooks_subject(settings: Settings) -> str:
    """Where "endpoint X has work" goes: the jobs stream, beside the transcription jobs."""
    return f"{settings.jobs_subject}.webhooks"


async def retry(
    db: asyncpg.Pool,
    settings: Settings,
    nats: BrokerConnection | None,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> None:
    outcome = await sql.requeue(db, endpoint_id, delivery_id)
    if outcome == "unknown":
        raise NotFound("no such delivery of this webhook endpoint")
    if outcome == "gone":
        raise Conflict(
            "this delivery's event is older than the event log keeps (30 days): it cannot be "
            "sent again"
        )
    try:
        await publish_kicks(nats, webhooks_subject(settings), [endpoint_id])
    except Exception as exc:  # the workers' sweep takes it within seconds anyway
        log.warning("webhooks: could not announce the retry: %s", exc)


async def publish_kicks(
    nats: BrokerConnection | None, subject: str, endpoint_ids: Sequence[uuid.UUID]
) -> None:
    """Tell the workers these endpoints have work (best effort: their sweep finds it anyway)."""
    if nats is None or not nats.connected or not endpoint_ids:
        return
    js = nats.broker.client.jetstream()
    for endpoint_id in endpoint_ids:
        await js.publish(subject, str(endpoint_id).encode(), timeout=2.0)


class WebhookSink:
    """The event sink of webhooks: nothing is queued (each endpoint reads the log from its own
    place, lms.db.queries.webhooks); after the dispatcher's commit, the enabled endpoints
    subscribed to a type in the batch are announced on NATS."""

    name = "webhooks"

    def __init__(self, nats: BrokerConnection | None, settings: Settings) -> None:
        self.nats = nats
        self.subject = webhooks_subject(settings)
        self._touched: set[uuid.UUID] = set()

    async def accept(self, conn: asyncpg.Connection, events: Sequence[Event], since: Place) -> None:
        self._touched.update(await sql.subscribed(conn, sorted({e.type for e in events})))

    async def after_commit(self) -> None:
        touched, self._touched = sorted(self._touched), set()
        await publish_kicks(self.nats, self.subject, touched)
